package org.fmrlrec.core;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Map;

/**
 * The manifest entry of the shipped model (`model.json`, copied unchanged by `fmrlrec-edge export
 * --android-assets`): shapes the app needs and the sha256 of the .pte, checked before the runtime loads it.
 */
public final class ModelInfo {
    public final String id, target, quantization, prefillMode;
    public final int width, nLayers, nItems, topK, maxLen;
    public final String pteSha256;
    public final long pteBytes;

    /** A problem with the shipped model, worded for the person looking at the screen. */
    public static final class ModelException extends Exception {
        private static final long serialVersionUID = 1L;

        public ModelException(String message) {
            super(message);
        }
    }

    private ModelInfo(Map<String, Object> e) {
        id = Json.str(e, "id");
        target = Json.str(e, "target");
        quantization = Json.str(e, "quantization");
        width = (int) Json.num(e, "width");
        nLayers = (int) Json.num(e, "n_layers");
        nItems = (int) Json.num(e, "n_items");
        topK = (int) Json.num(e, "top_k");
        maxLen = (int) Json.num(e, "max_len");
        prefillMode = e.get("prefill") instanceof String ? (String) e.get("prefill") : "dynamic";
        String sha = null;
        long bytes = -1;
        for (Object f : Json.list(e, "files")) {
            @SuppressWarnings("unchecked") Map<String, Object> rec = (Map<String, Object>) f;
            if (Json.str(rec, "path").endsWith(".pte")) {
                sha = Json.str(rec, "sha256").toLowerCase();
                bytes = Json.num(rec, "bytes");
            }
        }
        if (sha == null) {
            throw new IllegalArgumentException("model.json lists no .pte file (is it an ExecuTorch entry?)");
        }
        if (!sha.matches("[0-9a-f]{64}")) {
            throw new IllegalArgumentException("the .pte's sha256 in model.json is not 64 hex digits");
        }
        pteSha256 = sha;
        pteBytes = bytes;
    }

    public static ModelInfo parse(String modelJson) throws ModelException {
        try {
            return new ModelInfo(Json.parseObject(modelJson));
        } catch (IllegalArgumentException | ClassCastException e) {
            throw new ModelException("model.json is damaged (" + e.getMessage() + "); re-run the export with "
                    + "--android-assets and rebuild the app");
        }
    }

    public int stateSize() {
        return nLayers * 2 * width;
    }

    /**
     * Copy the .pte from {@code in} to {@code out} while hashing it; throws if its size or sha256 differ
     * from model.json (a truncated asset, or a model.pte from another export).
     */
    public void copyVerified(InputStream in, OutputStream out) throws IOException, ModelException {
        MessageDigest md;
        try {
            md = MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);   // every Java platform has SHA-256
        }
        byte[] buf = new byte[1 << 16];
        long n = 0;
        for (int k; (k = in.read(buf)) > 0; ) {
            md.update(buf, 0, k);
            out.write(buf, 0, k);
            n += k;
        }
        String got = hex(md.digest());
        if (n != pteBytes || !got.equals(pteSha256)) {
            throw new ModelException("model.pte is damaged or does not belong to model.json (" + n + " bytes, sha256 "
                    + got.substring(0, 12) + "…; expected " + pteBytes + " bytes, " + pteSha256.substring(0, 12)
                    + "…). Re-run `fmrlrec-edge export … --android-assets … --force` and rebuild the app.");
        }
    }

    static String hex(byte[] digest) {
        StringBuilder b = new StringBuilder();
        for (byte x : digest) {
            b.append(String.format("%02x", x & 0xff));
        }
        return b.toString();
    }

    @Override public String toString() {
        return id + " (width " + width + ", " + quantization + ", " + nItems + " items, top " + topK + ")";
    }
}
