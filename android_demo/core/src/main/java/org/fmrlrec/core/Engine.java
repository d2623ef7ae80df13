package org.fmrlrec.core;

/**
 * A width-m recommender with the step-wise state API of the exported model (DESIGN.md, "Slicing and the
 * deployable module"). The app's engine runs the ExecuTorch .pte; {@link ReferenceEngine} computes the same
 * thing in plain Java.
 *
 * <p>State is float[n_layers * 2 * m], row-major [layer][re, im][m]; all zeros is a new user.
 */
public interface Engine {

    /** The history, oldest first (ids 1..numItems). Equals stepping through it from the zero state. */
    StepResult prefill(long[] itemIds);

    /** One new interaction; {@code state} is not modified. */
    StepResult step(long itemId, float[] state);

    /** Length of the state array (n_layers * 2 * m). */
    int stateSize();

    /** Number of real items N: valid ids are 1..N (0 is padding). */
    int numItems();
}
