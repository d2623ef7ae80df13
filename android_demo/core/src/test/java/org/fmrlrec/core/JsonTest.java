package org.fmrlrec.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.fail;

import java.util.List;
import java.util.Map;
import org.junit.Test;

public class JsonTest {

    @Test public void parsesWhatPythonJsonDumpsWrites() {
        Map<String, Object> o = Json.parseObject(
                "{\"a\": [1, -2.5, 3e-7, 1.0000000116860974e-07], \"s\": \"tab\\there \\u00e9\\\"\", "
                        + "\"t\": true, \"f\": false, \"n\": null, \"o\": {}}");
        List<Object> a = Json.list(o, "a");
        assertEquals(4, a.size());
        assertEquals(-2.5, (Double) a.get(1), 0);
        assertEquals(1.0000000116860974e-07f, Json.floats(a)[3], 0f);
        assertEquals("tab\there \u00e9\"", Json.str(o, "s"));
        assertEquals(Boolean.TRUE, o.get("t"));
        assertNull(o.get("n"));
        assertEquals(0, Json.obj(o, "o").size());
    }

    @Test public void refusesMalformedText() {
        String[] bad = {"", "{", "[1,]", "{\"a\" 1}", "\"unterminated", "[1] x", "{\"a\": tru}", "[01x]"};
        for (String text : bad) {
            try {
                Json.parse(text);
                fail("must refuse: " + text);
            } catch (IllegalArgumentException expected) {
                // the message names the position
            }
        }
    }

    @Test public void typedAccessNamesTheMissingKey() {
        try {
            Json.num(Json.parseObject("{\"width\": \"32\"}"), "width");
            fail();
        } catch (IllegalArgumentException expected) {
            assertEquals("JSON: 'width' is not a double", expected.getMessage());
        }
    }
}
