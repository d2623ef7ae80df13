package org.fmrlrec.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.Charset;
import java.util.List;
import java.util.Map;

/**
 * The assets folder written by the Python exporter (golden.json, reference_weights.bin, catalog.tsv),
 * found through -Dgolden.dir=DIR or the environment variable FMRLREC_GOLDEN_DIR.
 */
final class Golden {
    static final float TOL = 1e-4f;
    static final int SHOWN = 10;   // what the app displays; ids are compared on this many ranks

    private static File dir;
    private static Map<String, Object> golden;
    private static ReferenceEngine engine;

    static synchronized File dir() {
        if (dir == null) {
            String d = System.getProperty("golden.dir", System.getenv("FMRLREC_GOLDEN_DIR"));
            if (d == null || !new File(d, "golden.json").isFile()) {
                fail("no golden vectors: pass -Dgolden.dir=DIR or FMRLREC_GOLDEN_DIR=DIR, a folder written by "
                        + "`fmrlrec-edge export ... --android-assets DIR` (got " + d + ")");
            }
            dir = new File(d);
        }
        return dir;
    }

    static File file(String name) {
        return new File(dir(), name);
    }

    static byte[] bytes(String name) throws IOException {
        File f = file(name);
        byte[] out = new byte[(int) f.length()];
        InputStream in = new FileInputStream(f);
        try {
            int off = 0;
            for (int n; off < out.length && (n = in.read(out, off, out.length - off)) > 0; ) {
                off += n;
            }
        } finally {
            in.close();
        }
        return out;
    }

    static synchronized Map<String, Object> json() throws IOException {
        if (golden == null) {
            golden = Json.parseObject(new String(bytes("golden.json"), Charset.forName("UTF-8")));
        }
        return golden;
    }

    static synchronized ReferenceEngine engine() throws IOException {
        if (engine == null) {
            engine = ReferenceEngine.load(bytes("reference_weights.bin"));
        }
        return engine;
    }

    static List<Object> list(Object o) {
        @SuppressWarnings("unchecked") List<Object> l = (List<Object>) o;
        return l;
    }

    /**
     * Top-k ids equal rank by rank on the first SHOWN ranks. A swap is accepted only between near-ties:
     * where the expected list holds the id we got at a rank whose expected score is within TOL (float
     * summation order may reorder two scores that differ by ~1e-6).
     */
    static void assertTopIds(String what, long[] expIds, float[] expScores, long[] gotIds) {
        int n = Math.min(SHOWN, expIds.length);
        for (int r = 0; r < n; r++) {
            if (gotIds[r] == expIds[r]) {
                continue;
            }
            boolean nearTie = false;
            for (int j = 0; j < expIds.length; j++) {
                if (expIds[j] == gotIds[r] && Math.abs(expScores[j] - expScores[r]) <= TOL) {
                    nearTie = true;
                }
            }
            assertTrue(what + ": rank " + r + " expected item " + expIds[r] + " (score " + expScores[r]
                    + ") but got item " + gotIds[r], nearTie);
        }
    }

    static void assertClose(String what, float[] expected, float[] got) {
        assertEquals(what + ": length", expected.length, got.length);
        for (int i = 0; i < expected.length; i++) {
            if (Math.abs(expected[i] - got[i]) > TOL) {
                fail(what + "[" + i + "]: expected " + expected[i] + ", got " + got[i] + " (tolerance " + TOL + ")");
            }
        }
    }

    private Golden() {}
}
