package org.fmrlrec.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.Test;

/** Session logic on the real reference engine (the app runs the same logic on the ExecuTorch engine). */
public class SessionTest {

    private static long[] ids(List<Session.Recommendation> recs) {
        long[] out = new long[recs.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = recs.get(i).id;
        }
        return out;
    }

    @Test public void newUserHasZeroStateAndNoRecommendations() throws Exception {
        Session s = new Session(Golden.engine());
        assertTrue(s.isNewUser());
        assertEquals(0, s.history().length);
        assertArrayEquals(new float[Golden.engine().stateSize()], s.state(), 0f);
        assertTrue(s.recommendations(10).isEmpty());
        assertNull(s.last());
    }

    @Test public void tapsFollowTheGoldenChainAndRecordHistory() throws Exception {
        Map<String, Object> chain = Json.obj(Golden.json(), "chain");
        long[] items = Json.longs(Json.list(chain, "item_ids"));
        Session s = new Session(Golden.engine());
        for (int t = 0; t < 10; t++) {
            s.interact(items[t]);
            Golden.assertClose("session state after tap " + t,
                    Json.floats(Golden.list(Json.list(chain, "states").get(t))), s.state());
        }
        long[] first10 = new long[10];
        System.arraycopy(items, 0, first10, 0, 10);
        assertArrayEquals(first10, s.history());
        assertFalse(s.isNewUser());
    }

    @Test public void seenItemsAreFilteredFromTheDisplay() throws Exception {
        ReferenceEngine e = Golden.engine();
        Session s = new Session(e);
        s.interact(1);
        // keep tapping the model's own favourite: the history soon overlaps the top-K
        Set<Long> seen = new HashSet<Long>();
        boolean overlap = false;
        for (int t = 0; t < 30 && !overlap; t++) {
            s.interact(s.last().topIds[0]);
            seen.clear();
            for (long id : s.history()) {
                seen.add(id);
            }
            for (int i = 0; i < Golden.SHOWN; i++) {
                overlap |= seen.contains(s.last().topIds[i]);
            }
        }
        assertTrue("test setup: the history never reached the top-10", overlap);

        List<Session.Recommendation> recs = s.recommendations(Golden.SHOWN);
        List<Long> expected = new ArrayList<Long>();
        for (long id : s.last().topIds) {
            if (!seen.contains(id) && expected.size() < Golden.SHOWN) {
                expected.add(id);
            }
        }
        assertEquals(expected.size(), recs.size());
        for (int i = 0; i < recs.size(); i++) {
            assertEquals(expected.get(i).longValue(), recs.get(i).id);
            assertFalse("seen item shown: " + recs.get(i).id, seen.contains(recs.get(i).id));
            if (i > 0) {
                assertTrue(recs.get(i - 1).score >= recs.get(i).score);
            }
        }
        s.setFilterSeen(false);   // unfiltered: the model's raw top-10
        long[] raw = new long[Golden.SHOWN];
        System.arraycopy(s.last().topIds, 0, raw, 0, Golden.SHOWN);
        assertArrayEquals(raw, ids(s.recommendations(Golden.SHOWN)));
    }

    @Test public void resetStartsANewUser() throws Exception {
        ReferenceEngine e = Golden.engine();
        Session s = new Session(e);
        s.interact(3);
        s.interact(5);
        s.reset();
        assertTrue(s.isNewUser());
        assertEquals(0, s.history().length);
        assertArrayEquals(new float[e.stateSize()], s.state(), 0f);
        assertTrue(s.recommendations(10).isEmpty());
        // after reset a tap is exactly a fresh user's first tap
        StepResult afterReset = s.interact(7);
        StepResult fresh = new Session(e).interact(7);
        assertArrayEquals(fresh.topIds, afterReset.topIds);
        assertArrayEquals(fresh.state, afterReset.state, 0f);
        assertArrayEquals(new long[] {7}, s.history());
    }

    @Test public void restoredSessionContinuesIdentically() throws Exception {
        ReferenceEngine e = Golden.engine();
        Session a = new Session(e);
        for (long id : new long[] {2, 4, 6}) {
            a.interact(id);
        }
        // what the Activity puts in its Bundle on rotation
        Session b = Session.restore(e, a.history(), a.state(), a.last().topIds, a.last().topScores);
        assertArrayEquals(ids(a.recommendations(10)), ids(b.recommendations(10)));
        StepResult ra = a.interact(8), rb = b.interact(8);
        assertArrayEquals(ra.topIds, rb.topIds);
        assertArrayEquals(ra.state, rb.state, 0f);
        assertArrayEquals(a.history(), b.history());

        Session empty = Session.restore(e, new long[0], new float[e.stateSize()], null, null);
        assertTrue(empty.isNewUser() && empty.recommendations(10).isEmpty());
    }

    @Test public void restoreRefusesAStateOfAnotherModel() throws Exception {
        ReferenceEngine e = Golden.engine();
        try {
            Session.restore(e, new long[] {1}, new float[e.stateSize() + 2], new long[] {1}, new float[] {0f});
            fail("a state of the wrong size must be refused");
        } catch (IllegalArgumentException expected) {
            assertTrue(expected.getMessage().contains("saved state"));
        }
    }

    @Test public void outOfRangeIdsAreRefusedBeforeTheEngine() throws Exception {
        ReferenceEngine e = Golden.engine();
        Session s = new Session(e);
        s.interact(1);
        for (long bad : new long[] {0, e.numItems() + 1}) {
            try {
                s.interact(bad);
                fail("item " + bad + " must be refused");
            } catch (IllegalArgumentException expected) {
                assertArrayEquals(new long[] {1}, s.history());   // nothing changed
            }
        }
    }

    @Test public void displayIsCappedAtN() throws Exception {
        ReferenceEngine e = Golden.engine();
        Session s = new Session(e);
        s.interact(1);
        assertEquals(3, s.recommendations(3).size());
        int seenInTopK = 0;
        for (long id : s.last().topIds) {
            seenInTopK += id == 1 ? 1 : 0;
        }
        // asking for more than K gives what the model returned, less the one seen item if it was there
        assertEquals(e.topK - seenInTopK, s.recommendations(e.topK + 10).size());
    }
}
