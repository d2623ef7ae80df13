package org.fmrlrec.core;

/** What prefill and step return: the model's top-K items (best first) and the next state. */
public final class StepResult {
    public final float[] topScores;  // [K], descending
    public final long[] topIds;      // [K], item ids 1..N (never the padding id 0)
    public final float[] state;      // [n_layers * 2 * m]

    public StepResult(float[] topScores, long[] topIds, float[] state) {
        if (topScores.length != topIds.length) {
            throw new IllegalArgumentException(
                    "top_scores has " + topScores.length + " entries but top_ids has " + topIds.length);
        }
        this.topScores = topScores;
        this.topIds = topIds;
        this.state = state;
    }
}
