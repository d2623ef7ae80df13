package org.fmrlrec.core;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

/**
 * One user's session: the recurrent state, the history of tapped items, and what to show next.
 *
 * <p>Each tap is one O(1) {@link Engine#step} from the current state (never a re-run of the whole history).
 * The model returns its top-K; the display drops items the user has already seen (optional) and keeps the
 * first n. A new user (or {@link #reset}) is the zero state with no recommendations until the first tap.
 * Everything needed to survive an Activity restart is in {@link #history()}, {@link #state()} and
 * {@link #last()}, and comes back through {@link #restore}.
 */
public final class Session {

    /** One recommended item, best first. */
    public static final class Recommendation {
        public final long id;
        public final float score;

        Recommendation(long id, float score) {
            this.id = id;
            this.score = score;
        }

        @Override public String toString() {
            return id + ":" + score;
        }
    }

    private final Engine engine;
    private final List<Long> history = new ArrayList<Long>();
    private float[] state;
    private StepResult last;             // null until the first interaction
    private boolean filterSeen = true;

    public Session(Engine engine) {
        this.engine = engine;
        this.state = new float[engine.stateSize()];
    }

    /** A session saved earlier (e.g. in onSaveInstanceState). topIds/topScores may be null for a new user. */
    public static Session restore(Engine engine, long[] history, float[] state, long[] topIds, float[] topScores) {
        Session s = new Session(engine);
        if (state.length != engine.stateSize()) {
            throw new IllegalArgumentException("saved state has " + state.length + " values, the model needs "
                    + engine.stateSize() + " (was it saved by another model?)");
        }
        if ((topIds == null) != (history.length == 0)) {
            throw new IllegalArgumentException("saved recommendations and history do not belong together");
        }
        for (long id : history) {
            s.checkId(id);
            s.history.add(id);
        }
        s.state = state.clone();
        if (topIds != null) {
            s.last = new StepResult(topScores.clone(), topIds.clone(), s.state.clone());
        }
        return s;
    }

    /** The user tapped {@code itemId}: one model step, history and state updated. */
    public StepResult interact(long itemId) {
        checkId(itemId);
        StepResult r = engine.step(itemId, state);
        if (r.state.length != state.length) {
            throw new IllegalStateException("the model returned a state of " + r.state.length + " values, expected "
                    + state.length);
        }
        history.add(itemId);
        state = r.state.clone();
        last = r;
        return r;
    }

    /** A new user: zero state, empty history, no recommendations. */
    public void reset() {
        history.clear();
        state = new float[engine.stateSize()];
        last = null;
    }

    public void setFilterSeen(boolean filterSeen) {
        this.filterSeen = filterSeen;
    }

    /** Up to n recommendations from the model's top-K, without already-seen items when filtering is on. */
    public List<Recommendation> recommendations(int n) {
        if (last == null) {
            return Collections.emptyList();
        }
        Set<Long> seen = filterSeen ? new HashSet<Long>(history) : Collections.<Long>emptySet();
        List<Recommendation> out = new ArrayList<Recommendation>();
        for (int i = 0; i < last.topIds.length && out.size() < n; i++) {
            if (!seen.contains(last.topIds[i])) {
                out.add(new Recommendation(last.topIds[i], last.topScores[i]));
            }
        }
        return out;
    }

    /** Tapped items, oldest first (repeats kept: the model saw each tap). */
    public long[] history() {
        long[] out = new long[history.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = history.get(i);
        }
        return out;
    }

    public float[] state() {
        return state.clone();
    }

    /** The last model output, or null for a new user. */
    public StepResult last() {
        return last;
    }

    public boolean isNewUser() {
        return history.isEmpty();
    }

    private void checkId(long id) {
        // native runtimes read out of bounds on a bad id instead of failing: check before every call
        if (id < 1 || id > engine.numItems()) {
            throw new IllegalArgumentException("item id " + id + " is outside 1.." + engine.numItems());
        }
    }

    @Override public String toString() {
        return "Session(history=" + Arrays.toString(history()) + ")";
    }
}
