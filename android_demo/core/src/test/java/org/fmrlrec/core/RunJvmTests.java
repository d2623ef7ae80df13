package org.fmrlrec.core;

import org.junit.internal.TextListener;
import org.junit.runner.JUnitCore;
import org.junit.runner.Result;

/**
 * Runs the given test classes with JUnit 4 and ends with one line "N passed, M failed" (", S skipped" when
 * some were skipped), exiting non-zero on any failure or when nothing ran. Used by run_jvm_tests.sh.
 */
public final class RunJvmTests {
    public static void main(String[] args) throws ClassNotFoundException {
        Class<?>[] classes = new Class<?>[args.length];
        for (int i = 0; i < args.length; i++) {
            classes[i] = Class.forName(args[i]);
        }
        JUnitCore junit = new JUnitCore();
        junit.addListener(new TextListener(System.out));
        Result r = junit.run(classes);
        int skipped = r.getIgnoreCount() + r.getAssumptionFailureCount();
        int failed = r.getFailureCount();
        int passed = r.getRunCount() - failed - r.getAssumptionFailureCount();
        System.out.println(passed + " passed, " + failed + " failed" + (skipped > 0 ? ", " + skipped + " skipped" : ""));
        System.exit(failed == 0 && passed > 0 ? 0 : 1);
    }
}
