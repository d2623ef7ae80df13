package org.fmrlrec.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.util.Arrays;
import java.util.List;
import java.util.Map;
import org.junit.Test;

/** The pure-Java engine against the eager PyTorch module (golden.json written by export/android.py). */
public class ReferenceEngineTest {

    @Test public void headerMatchesGolden() throws Exception {
        Map<String, Object> g = Golden.json();
        ReferenceEngine e = Golden.engine();
        assertEquals(Json.num(g, "width"), e.m);
        assertEquals(Json.num(g, "n_layers"), e.nLayers);
        assertEquals(Json.num(g, "n_items"), e.numItems());
        assertEquals(Json.num(g, "top_k"), e.topK);
        assertEquals(Json.num(g, "max_len"), e.maxLen);
        assertEquals(e.nLayers * 2 * e.m, e.stateSize());
    }

    @Test public void prefillMatchesGolden() throws Exception {
        List<Object> cases = Json.list(Golden.json(), "prefill");
        assertTrue("golden.json has no prefill cases", cases.size() >= 3);
        for (Object c : cases) {
            @SuppressWarnings("unchecked") Map<String, Object> p = (Map<String, Object>) c;
            long[] ids = Json.longs(Json.list(p, "item_ids"));
            String what = "prefill of " + ids.length + " items";
            StepResult r = Golden.engine().prefill(ids);
            float[] expScores = Json.floats(Json.list(p, "top_scores"));
            Golden.assertTopIds(what, Json.longs(Json.list(p, "top_ids")), expScores, r.topIds);
            Golden.assertClose(what + " scores", expScores, r.topScores);
            Golden.assertClose(what + " state", Json.floats(Json.list(p, "state")), r.state);
        }
    }

    @Test public void fiftyStepChainFromZeroStateMatchesGolden() throws Exception {
        Map<String, Object> chain = Json.obj(Golden.json(), "chain");
        long[] items = Json.longs(Json.list(chain, "item_ids"));
        assertEquals(50, items.length);
        ReferenceEngine e = Golden.engine();
        float[] state = new float[e.stateSize()];   // a new user
        for (int t = 0; t < items.length; t++) {
            StepResult r = e.step(items[t], state);
            String what = "chain step " + t;
            float[] expScores = Json.floats(Golden.list(Json.list(chain, "top_scores").get(t)));
            Golden.assertTopIds(what, Json.longs(Golden.list(Json.list(chain, "top_ids").get(t))), expScores, r.topIds);
            Golden.assertClose(what + " scores", expScores, r.topScores);
            Golden.assertClose(what + " state", Json.floats(Golden.list(Json.list(chain, "states").get(t))), r.state);
            state = r.state;   // feed our own state on, as the app does: errors would accumulate here
        }
    }

    @Test public void stepDoesNotModifyItsInputAndNeverReturnsPadding() throws Exception {
        ReferenceEngine e = Golden.engine();
        float[] state = e.prefill(new long[] {1, 2, 3}).state;
        float[] copy = state.clone();
        StepResult r = e.step(4, state);
        assertTrue(Arrays.equals(copy, state));
        for (int i = 0; i < r.topIds.length; i++) {
            assertTrue(r.topIds[i] >= 1 && r.topIds[i] <= e.numItems());
            if (i > 0) {
                assertTrue("scores must be sorted", r.topScores[i - 1] >= r.topScores[i]);
            }
        }
    }

    @Test public void rejectsBadInputs() throws Exception {
        ReferenceEngine e = Golden.engine();
        float[] zero = new float[e.stateSize()];
        for (long bad : new long[] {0, -1, e.numItems() + 1}) {
            try {
                e.step(bad, zero);
                fail("item " + bad + " must be refused");
            } catch (IllegalArgumentException expected) {
                assertTrue(expected.getMessage().contains("outside 1.." + e.numItems()));
            }
        }
        try {
            e.step(1, new float[e.stateSize() + 1]);
            fail("a wrong-sized state must be refused");
        } catch (IllegalArgumentException expected) {
            assertTrue(expected.getMessage().contains("state"));
        }
    }

    @Test public void refusesDamagedWeightFiles() throws Exception {
        byte[] good = Golden.bytes("reference_weights.bin");
        byte[] truncated = Arrays.copyOf(good, good.length - 4);
        byte[] badMagic = good.clone();
        badMagic[0] = 'X';
        byte[] tooShort = Arrays.copyOf(good, 12);
        for (byte[] bad : new byte[][] {truncated, badMagic, tooShort}) {
            try {
                ReferenceEngine.load(bad);
                fail("a damaged file must be refused");
            } catch (IllegalArgumentException expected) {
                assertTrue(expected.getMessage(), expected.getMessage().contains("reference_weights.bin"));
            }
        }
    }
}
