package org.fmrlrec.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.StringReader;
import java.util.List;
import org.junit.Test;

public class CatalogTest {

    @Test public void exportedCatalogCoversEveryItemOfTheModel() throws Exception {
        InputStream in = new FileInputStream(Golden.file("catalog.tsv"));
        Catalog c;
        try {
            c = Catalog.load(in);
        } finally {
            in.close();
        }
        assertEquals(Golden.engine().numItems(), c.size());
        for (long id = 1; id <= c.size(); id++) {
            assertFalse("item " + id + " has no title", c.title(id).isEmpty());
        }
        assertEquals(c.size(), c.search("", 1_000_000).size());   // an empty query lists everything
    }

    @Test public void searchIsCaseInsensitiveAndLimited() throws Exception {
        Catalog c = Catalog.load(new StringReader("id\ttitle\n1\tToy Story (1995)\n2\tHeat\n3\tToy Soldiers\n4\tjumanji\n"));
        List<Long> hits = c.search("  TOY ", 10);
        assertEquals(2, hits.size());
        assertEquals(1L, hits.get(0).longValue());
        assertEquals(3L, hits.get(1).longValue());
        assertEquals(1, c.search("toy", 1).size());
        assertEquals("jumanji", c.title(4));
        assertTrue(c.search("nothing like this", 10).isEmpty());
        assertEquals("item 99", c.title(99));
    }

    @Test public void malformedCatalogsAreRefused() {
        String[] bad = {"", "title\tid\n1\ta\n", "id\ttitle\n2\tskips item 1\n", "id\ttitle\nx\ty\n", "id\ttitle\n"};
        for (String text : bad) {
            try {
                Catalog.load(new StringReader(text));
                fail("must refuse: " + text.replace("\n", "\\n"));
            } catch (IOException expected) {
                assertTrue(expected.getMessage().contains("catalog.tsv"));
            }
        }
    }
}
