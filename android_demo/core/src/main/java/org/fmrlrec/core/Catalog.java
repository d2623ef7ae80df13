package org.fmrlrec.core;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.Reader;
import java.nio.charset.Charset;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * Item titles from `catalog.tsv`: a header line "id\ttitle", then one line per item 1..N in order
 * (written by `fmrlrec-edge export --android-assets`).
 */
public final class Catalog {
    private final String[] titles;   // index = item id; [0] is the padding row
    private final String[] folded;   // lower-cased titles for search

    private Catalog(String[] titles) {
        this.titles = titles;
        this.folded = new String[titles.length];
        for (int i = 0; i < titles.length; i++) {
            folded[i] = titles[i].toLowerCase(Locale.ROOT);
        }
    }

    public static Catalog load(InputStream in) throws IOException {
        return load(new InputStreamReader(in, Charset.forName("UTF-8")));
    }

    public static Catalog load(Reader reader) throws IOException {
        BufferedReader r = new BufferedReader(reader);
        String header = r.readLine();
        if (header == null || !header.equals("id\ttitle")) {
            throw new IOException("catalog.tsv must start with the header line 'id<TAB>title'");
        }
        List<String> titles = new ArrayList<String>();
        titles.add("");
        int lineNo = 1;
        for (String line; (line = r.readLine()) != null; ) {
            lineNo++;
            if (line.isEmpty()) {
                continue;
            }
            int tab = line.indexOf('\t');
            long id;
            try {
                id = Long.parseLong(tab < 0 ? line : line.substring(0, tab));
            } catch (NumberFormatException e) {
                throw new IOException("catalog.tsv line " + lineNo + ": not an item id: " + line);
            }
            if (id != titles.size()) {
                throw new IOException("catalog.tsv line " + lineNo + ": expected item " + titles.size() + ", got " + id);
            }
            titles.add(tab < 0 ? "" : line.substring(tab + 1));
        }
        if (titles.size() == 1) {
            throw new IOException("catalog.tsv lists no items");
        }
        return new Catalog(titles.toArray(new String[0]));
    }

    /** Number of items N (ids 1..N). */
    public int size() {
        return titles.length - 1;
    }

    public String title(long id) {
        return id >= 1 && id < titles.length ? titles[(int) id] : "item " + id;
    }

    /** Ids of up to `limit` items whose title contains `query` (case-insensitive), in id order. */
    public List<Long> search(String query, int limit) {
        String q = query == null ? "" : query.trim().toLowerCase(Locale.ROOT);
        List<Long> out = new ArrayList<Long>();
        for (int id = 1; id < titles.length && out.size() < limit; id++) {
            if (q.isEmpty() || folded[id].contains(q)) {
                out.add((long) id);
            }
        }
        return out;
    }
}
