package org.fmrlrec.demo;

import org.fmrlrec.core.Engine;
import org.fmrlrec.core.ModelInfo;
import org.fmrlrec.core.StepResult;
import org.pytorch.executorch.EValue;
import org.pytorch.executorch.Module;
import org.pytorch.executorch.Tensor;

/**
 * The exported .pte run by ExecuTorch's Android runtime (XNNPACK). One file holds both methods:
 * prefill(item_ids int64[T]) and step(item_id int64[1], state f32[L, 2, m]), each returning
 * (top_scores f32[K], top_ids int64[K], state f32[L, 2, m]).
 */
final class ExecuTorchEngine implements Engine {
    private final Module module;
    private final ModelInfo info;
    private final long[] stateShape;

    private ExecuTorchEngine(Module module, ModelInfo info) {
        this.module = module;
        this.info = info;
        this.stateShape = new long[] {info.nLayers, 2, info.width};
    }

    /** Loads the .pte at an absolute file path (ExecuTorch cannot read straight from the APK's assets). */
    static ExecuTorchEngine load(String ptePath, ModelInfo info) {
        return new ExecuTorchEngine(Module.load(ptePath), info);
    }

    @Override public StepResult prefill(long[] itemIds) {
        if (itemIds.length == 0) {
            throw new IllegalArgumentException("prefill needs at least one item");
        }
        for (long id : itemIds) {
            checkId(id);
        }
        // the exported prefill reads at most max_len items, as the model did in training: keep the newest
        int t = Math.min(itemIds.length, info.maxLen);
        long[] ids = new long[t];
        System.arraycopy(itemIds, itemIds.length - t, ids, 0, t);
        EValue[] out;
        if ("padded".equals(info.prefillMode)) {   // fixed-size input: left-pad with 0 and pass the length
            long[] padded = new long[info.maxLen];
            System.arraycopy(ids, 0, padded, info.maxLen - t, t);
            out = module.execute("prefill", EValue.from(Tensor.fromBlob(padded, new long[] {info.maxLen})),
                    EValue.from(Tensor.fromBlob(new long[] {t}, new long[] {1})));
        } else {
            out = module.execute("prefill", EValue.from(Tensor.fromBlob(ids, new long[] {t})));
        }
        return result("prefill", out);
    }

    @Override public StepResult step(long itemId, float[] state) {
        checkId(itemId);
        if (state.length != stateSize()) {
            throw new IllegalArgumentException("state has " + state.length + " values, expected " + stateSize());
        }
        EValue[] out = module.execute("step",
                EValue.from(Tensor.fromBlob(new long[] {itemId}, new long[] {1})),
                EValue.from(Tensor.fromBlob(state, stateShape)));
        return result("step", out);
    }

    private StepResult result(String method, EValue[] out) {
        if (out.length != 3) {
            throw new IllegalStateException(method + " returned " + out.length + " outputs, expected 3 "
                    + "(top_scores, top_ids, state): is model.pte an fmrlrec-edge export?");
        }
        float[] scores = out[0].toTensor().getDataAsFloatArray();
        long[] ids = out[1].toTensor().getDataAsLongArray();
        float[] state = out[2].toTensor().getDataAsFloatArray();
        if (ids.length != info.topK || state.length != stateSize()) {
            throw new IllegalStateException(method + " returned " + ids.length + " ids and a state of " + state.length
                    + " values; model.json says " + info.topK + " and " + stateSize());
        }
        return new StepResult(scores, ids, state);
    }

    private void checkId(long id) {
        // a native runtime reads out of bounds on a bad id instead of failing: check first
        if (id < 1 || id > info.nItems) {
            throw new IllegalArgumentException("item id " + id + " is outside 1.." + info.nItems);
        }
    }

    @Override public int stateSize() {
        return info.stateSize();
    }

    @Override public int numItems() {
        return info.nItems;
    }

    /** Frees the native program now instead of whenever the garbage collector runs. */
    void close() {
        module.destroy();
    }
}
