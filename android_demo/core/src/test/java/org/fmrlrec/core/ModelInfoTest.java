package org.fmrlrec.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;
import static org.junit.Assume.assumeTrue;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.nio.charset.Charset;
import java.security.MessageDigest;
import org.junit.Test;

/** The sha256 check the app runs on model.pte before handing it to ExecuTorch. */
public class ModelInfoTest {

    private static String entry(String sha, long bytes) {
        return "{\"id\": \"executorch-d32-fp32\", \"width\": 32, \"target\": \"executorch\", \"quantization\": \"fp32\","
                + " \"files\": [{\"path\": \"executorch/d32-fp32/model.pte\", \"bytes\": " + bytes + ", \"sha256\": \""
                + sha + "\"}], \"n_items\": 120, \"n_layers\": 2, \"top_k\": 50, \"max_len\": 50, \"prefill\": \"dynamic\"}";
    }

    @Test public void intactFileIsCopiedByteForByte() throws Exception {
        byte[] pte = "pretend program bytes".getBytes(Charset.forName("UTF-8"));
        String sha = ModelInfo.hex(MessageDigest.getInstance("SHA-256").digest(pte));
        ModelInfo info = ModelInfo.parse(entry(sha, pte.length));
        assertEquals(32, info.width);
        assertEquals(2 * 2 * 32, info.stateSize());
        assertEquals("dynamic", info.prefillMode);
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        info.copyVerified(new ByteArrayInputStream(pte), out);
        assertArrayEquals(pte, out.toByteArray());
    }

    @Test public void damagedOrForeignFileIsRefusedWithAReadableMessage() throws Exception {
        byte[] pte = "pretend program bytes".getBytes(Charset.forName("UTF-8"));
        String sha = ModelInfo.hex(MessageDigest.getInstance("SHA-256").digest(pte));
        ModelInfo info = ModelInfo.parse(entry(sha, pte.length));
        byte[] flipped = pte.clone();
        flipped[3] ^= 1;
        byte[] truncated = java.util.Arrays.copyOf(pte, pte.length - 1);
        for (byte[] bad : new byte[][] {flipped, truncated}) {
            try {
                info.copyVerified(new ByteArrayInputStream(bad), new ByteArrayOutputStream());
                fail("a changed model.pte must be refused");
            } catch (ModelInfo.ModelException expected) {
                assertTrue(expected.getMessage().contains("damaged"));
            }
        }
    }

    private static String zeros64() {
        StringBuilder b = new StringBuilder();
        for (int i = 0; i < 64; i++) {
            b.append('0');
        }
        return b.toString();
    }

    @Test public void brokenModelJsonIsRefused() {
        String[] bad = {"{", "[]", entry("abc", 3), "{\"id\": \"x\"}",
                entry(zeros64(), 3).replace(".pte", ".onnx")};
        for (String text : bad) {
            try {
                ModelInfo.parse(text);
                fail("must refuse: " + text);
            } catch (ModelInfo.ModelException expected) {
                assertTrue(expected.getMessage().contains("model.json"));
            }
        }
    }

    /** When the assets came from a real ExecuTorch export, check the shipped pair itself. */
    @Test public void shippedModelMatchesItsManifestEntry() throws Exception {
        assumeTrue("no model.pte in the golden dir (reference assets only)",
                Golden.file("model.pte").isFile() && Golden.file("model.json").isFile());
        ModelInfo info = ModelInfo.parse(new String(Golden.bytes("model.json"), Charset.forName("UTF-8")));
        assertEquals("executorch", info.target);
        assertEquals(Golden.engine().m, info.width);
        assertEquals(Golden.engine().numItems(), info.nItems);
        assertEquals(Golden.engine().topK, info.topK);
        info.copyVerified(new ByteArrayInputStream(Golden.bytes("model.pte")), new ByteArrayOutputStream());
    }
}
