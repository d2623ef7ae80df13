package org.fmrlrec.core;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;

/**
 * The width-m model in plain Java, computing exactly what fmrlrec_edge/deploy.py's DeployableWidth.step
 * computes, from the weights file `reference_weights.bin` that `fmrlrec-edge export --android-assets` writes.
 * It is the ground truth the JVM tests check against the Python golden vectors, and needs no native code.
 *
 * <p>File format (version 1, little-endian, documented in export/android.py and android_demo/README.md):
 * magic "FMRLRW\0\1", int32 version, m, n_layers, n_items, top_k, max_len, float32 ln_eps, int32 n_chunks,
 * n_chunks x (int32 lo, hi), then float32 tensors: E [N+1, m]; per layer ln1_w, ln1_b, B_w [2m, m], B_b,
 * lam_re, lam_im, C_w [m, 2m], C_b, ln2_w, ln2_b, W1_w, W1_b, Wg_w, Wg_b, W2_w, W2_b.
 */
public final class ReferenceEngine implements Engine {
    static final byte[] MAGIC = {'F', 'M', 'R', 'L', 'R', 'W', 0, 1};
    static final int VERSION = 1;

    public final int m, nLayers, nItems, topK, maxLen;
    private final float eps;
    private final int[][] chunks;      // [n_chunks][lo, hi)
    private final float[] items;       // E, [N+1, m]
    private final Layer[] layers;

    private static final class Layer {
        float[] ln1W, ln1B, bW, bB, lamRe, lamIm, cW, cB, ln2W, ln2B, w1W, w1B, wgW, wgB, w2W, w2B;
    }

    private ReferenceEngine(ByteBuffer buf) {
        byte[] magic = new byte[MAGIC.length];
        buf.get(magic);
        if (!Arrays.equals(magic, MAGIC)) {
            throw new IllegalArgumentException("not a reference_weights.bin file (bad magic)");
        }
        int version = buf.getInt();
        if (version != VERSION) {
            throw new IllegalArgumentException("reference_weights.bin version " + version + ", this app reads "
                    + VERSION + ": re-export the assets with the matching fmrlrec-edge");
        }
        m = buf.getInt();
        nLayers = buf.getInt();
        nItems = buf.getInt();
        topK = buf.getInt();
        maxLen = buf.getInt();
        eps = buf.getFloat();
        int nChunks = buf.getInt();
        if (m < 1 || nLayers < 1 || nItems < 1 || topK < 1 || topK > nItems || nChunks < 1 || nChunks > m) {
            throw new IllegalArgumentException("reference_weights.bin has an impossible header (m=" + m
                    + ", layers=" + nLayers + ", items=" + nItems + ", K=" + topK + ", chunks=" + nChunks + ")");
        }
        chunks = new int[nChunks][];
        for (int c = 0, expectLo = 0; c < nChunks; c++) {
            chunks[c] = new int[] {buf.getInt(), buf.getInt()};
            if (chunks[c][0] != expectLo || chunks[c][1] <= expectLo || chunks[c][1] > m) {
                throw new IllegalArgumentException("reference_weights.bin has bad chunk bounds at chunk " + c);
            }
            expectLo = chunks[c][1];
        }
        if (chunks[nChunks - 1][1] != m) {
            throw new IllegalArgumentException("reference_weights.bin chunks end at " + chunks[nChunks - 1][1]
                    + ", not at m=" + m);
        }
        long floats = (long) (nItems + 1) * m + (long) nLayers * perLayerFloats(m);
        if (buf.remaining() != floats * 4) {
            throw new IllegalArgumentException("reference_weights.bin holds " + buf.remaining() + " bytes of tensors, "
                    + "expected " + floats * 4 + " for m=" + m + ": the file is truncated or damaged");
        }
        items = floats(buf, (nItems + 1) * m);
        layers = new Layer[nLayers];
        for (int l = 0; l < nLayers; l++) {
            Layer p = new Layer();
            p.ln1W = floats(buf, m);
            p.ln1B = floats(buf, m);
            p.bW = floats(buf, 2 * m * m);
            p.bB = floats(buf, 2 * m);
            p.lamRe = floats(buf, m);
            p.lamIm = floats(buf, m);
            p.cW = floats(buf, m * 2 * m);
            p.cB = floats(buf, m);
            p.ln2W = floats(buf, m);
            p.ln2B = floats(buf, m);
            p.w1W = floats(buf, m * m);
            p.w1B = floats(buf, m);
            p.wgW = floats(buf, m * m);
            p.wgB = floats(buf, m);
            p.w2W = floats(buf, m * m);
            p.w2B = floats(buf, m);
            layers[l] = p;
        }
    }

    private static long perLayerFloats(long m) {
        // ln1 (2m) + B (2m*m + 2m) + lambda (2m) + C (2m*m + m) + ln2 (2m) + 3 FFN linears (3 (m*m + m))
        return 2 * m + 2 * m * m + 2 * m + 2 * m + 2 * m * m + m + 2 * m + 3 * (m * m + m);
    }

    private static float[] floats(ByteBuffer buf, int n) {
        float[] out = new float[n];
        buf.asFloatBuffer().get(out);
        buf.position(buf.position() + 4 * n);
        return out;
    }

    public static ReferenceEngine load(byte[] data) {
        try {
            return new ReferenceEngine(ByteBuffer.wrap(data).order(ByteOrder.LITTLE_ENDIAN));
        } catch (java.nio.BufferUnderflowException e) {
            throw new IllegalArgumentException("reference_weights.bin is too short (" + data.length + " bytes)");
        }
    }

    public static ReferenceEngine load(InputStream in) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        byte[] chunk = new byte[1 << 16];
        for (int n; (n = in.read(chunk)) > 0; ) {
            out.write(chunk, 0, n);
        }
        return load(out.toByteArray());
    }

    @Override public int stateSize() {
        return nLayers * 2 * m;
    }

    @Override public int numItems() {
        return nItems;
    }

    @Override public StepResult prefill(long[] itemIds) {
        if (itemIds.length == 0) {
            throw new IllegalArgumentException("prefill needs at least one item");
        }
        // the recurrence from the zero state equals the parallel form the exported prefill uses
        StepResult r = null;
        float[] state = new float[stateSize()];
        for (long id : itemIds) {
            r = step(id, state);
            state = r.state;
        }
        return r;
    }

    @Override public StepResult step(long itemId, float[] state) {
        if (itemId < 1 || itemId > nItems) {
            throw new IllegalArgumentException("item id " + itemId + " is outside 1.." + nItems);
        }
        if (state.length != stateSize()) {
            throw new IllegalArgumentException("state has " + state.length + " values, expected " + stateSize());
        }
        float[] x = Arrays.copyOfRange(items, (int) itemId * m, (int) itemId * m + m);
        float[] next = new float[state.length];
        float[] u = new float[2 * m], h = new float[2 * m], a = new float[m], g = new float[m], v = new float[m];
        for (int l = 0; l < nLayers; l++) {
            Layer p = layers[l];
            int re = l * 2 * m, im = re + m;
            // x = x + Re(C h'),  h' = lambda * h + gamma * (B LN1(x))   (gamma is folded into B)
            layerNorm(x, p.ln1W, p.ln1B, a);
            linear(p.bW, p.bB, a, m, u);
            for (int i = 0; i < m; i++) {
                float hr = state[re + i], hi = state[im + i];
                h[i] = p.lamRe[i] * hr - p.lamIm[i] * hi + u[i];
                h[m + i] = p.lamRe[i] * hi + p.lamIm[i] * hr + u[m + i];
                next[re + i] = h[i];
                next[im + i] = h[m + i];
            }
            float[] y = new float[m];
            linear(p.cW, p.cB, h, 2 * m, y);
            for (int i = 0; i < m; i++) {
                x[i] += y[i];
            }
            // x = x + W2(silu(Wg LN2(x)) * W1 LN2(x))
            layerNorm(x, p.ln2W, p.ln2B, a);
            linear(p.wgW, p.wgB, a, m, g);
            linear(p.w1W, p.w1B, a, m, v);
            for (int i = 0; i < m; i++) {
                g[i] = (float) (g[i] / (1.0 + Math.exp(-g[i]))) * v[i];
            }
            linear(p.w2W, p.w2B, g, m, y);
            for (int i = 0; i < m; i++) {
                x[i] += y[i];
            }
        }
        return top(x, next);
    }

    /** scores = x @ E[1:]^T, then the K best (ties: the smaller id first); ids are column + 1. */
    private StepResult top(float[] x, float[] state) {
        float[] bestS = new float[topK];
        long[] bestI = new long[topK];
        int filled = 0;
        for (int id = 1; id <= nItems; id++) {
            double s = 0;
            for (int k = 0, off = id * m; k < m; k++) {
                s += (double) x[k] * items[off + k];
            }
            float score = (float) s;
            if (filled == topK && score <= bestS[topK - 1]) {
                continue;
            }
            int pos = filled < topK ? filled++ : topK - 1;
            while (pos > 0 && bestS[pos - 1] < score) {   // insertion into the sorted top-K
                bestS[pos] = bestS[pos - 1];
                bestI[pos] = bestI[pos - 1];
                pos--;
            }
            bestS[pos] = score;
            bestI[pos] = id;
        }
        return new StepResult(bestS, bestI, state);
    }

    /** out = W in + b, W row-major [out.length, n]. */
    private static void linear(float[] W, float[] b, float[] in, int n, float[] out) {
        for (int r = 0; r < out.length; r++) {
            double s = b[r];
            for (int c = 0, off = r * n; c < n; c++) {
                s += (double) W[off + c] * in[c];
            }
            out[r] = (float) s;
        }
    }

    /** LayerNorm over each chunk [lo, hi) separately (biased variance, eps inside the root), as in torch. */
    private void layerNorm(float[] x, float[] w, float[] b, float[] out) {
        for (int[] c : chunks) {
            int lo = c[0], hi = c[1];
            double mean = 0, var = 0;
            for (int i = lo; i < hi; i++) {
                mean += x[i];
            }
            mean /= hi - lo;
            for (int i = lo; i < hi; i++) {
                var += (x[i] - mean) * (x[i] - mean);
            }
            double inv = 1.0 / Math.sqrt(var / (hi - lo) + eps);
            for (int i = lo; i < hi; i++) {
                out[i] = (float) ((x[i] - mean) * inv * w[i] + b[i]);
            }
        }
    }
}
