package org.fmrlrec.demo;

import android.app.Activity;
import android.os.Bundle;
import android.text.Editable;
import android.text.TextWatcher;
import android.view.View;
import android.widget.AdapterView;
import android.widget.ArrayAdapter;
import android.widget.Button;
import android.widget.EditText;
import android.widget.ListView;
import android.widget.TextView;
import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.FileNotFoundException;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import org.fmrlrec.core.Catalog;
import org.fmrlrec.core.ModelInfo;
import org.fmrlrec.core.ModelInfo.ModelException;
import org.fmrlrec.core.Session;
import org.fmrlrec.core.StepResult;

/**
 * One screen: the catalog (with a search box), the user's history, and the current top-10. Tapping an item
 * (in the catalog or in the recommendations) is one model step. The session (history, float[] state, last
 * top-K) is saved in onSaveInstanceState, so it survives rotation and the process being killed; the model
 * itself is reloaded (a few milliseconds for these sizes).
 */
public class MainActivity extends Activity {
    private static final int SHOWN = 10;           // recommendations on screen
    private static final int SEARCH_LIMIT = 200;   // catalog rows on screen
    private static final int HISTORY_SHOWN = 20;   // newest history titles on screen
    private static final String SAVED = "session";

    private final ExecutorService worker = Executors.newSingleThreadExecutor();
    private TextView status, historyView;
    private EditText search;
    private ArrayAdapter<String> catalogAdapter, recsAdapter;
    private final List<Long> catalogIds = new ArrayList<Long>(), recIds = new ArrayList<Long>();

    private ModelInfo info;
    private Catalog catalog;
    private ExecuTorchEngine engine;
    private Session session;
    private Bundle pendingSession;                 // saved session waiting for the model to load

    /** What the background load hands to the UI thread. */
    private static final class Loaded {
        ModelInfo info;
        Catalog catalog;
        ExecuTorchEngine engine;
    }

    @Override protected void onCreate(Bundle saved) {
        super.onCreate(saved);
        setContentView(R.layout.activity_main);
        status = (TextView) findViewById(R.id.status);
        historyView = (TextView) findViewById(R.id.history);
        search = (EditText) findViewById(R.id.search);
        ListView catalogList = (ListView) findViewById(R.id.catalog);
        ListView recsList = (ListView) findViewById(R.id.recommendations);
        Button reset = (Button) findViewById(R.id.reset);

        catalogAdapter = new ArrayAdapter<String>(this, android.R.layout.simple_list_item_1, new ArrayList<String>());
        recsAdapter = new ArrayAdapter<String>(this, android.R.layout.simple_list_item_1, new ArrayList<String>());
        catalogList.setAdapter(catalogAdapter);
        recsList.setAdapter(recsAdapter);
        catalogList.setOnItemClickListener(new AdapterView.OnItemClickListener() {
            @Override public void onItemClick(AdapterView<?> parent, View view, int position, long rowId) {
                tap(catalogIds.get(position));
            }
        });
        recsList.setOnItemClickListener(new AdapterView.OnItemClickListener() {
            @Override public void onItemClick(AdapterView<?> parent, View view, int position, long rowId) {
                tap(recIds.get(position));
            }
        });
        reset.setOnClickListener(new View.OnClickListener() {
            @Override public void onClick(View v) {
                if (session != null) {
                    session.reset();
                    showSession();
                }
            }
        });
        search.addTextChangedListener(new TextWatcher() {
            @Override public void beforeTextChanged(CharSequence s, int start, int count, int after) {}

            @Override public void onTextChanged(CharSequence s, int start, int before, int count) {}

            @Override public void afterTextChanged(Editable s) {
                showCatalog();
            }
        });

        pendingSession = saved == null ? null : saved.getBundle(SAVED);
        status.setText(R.string.loading);
        // copying and hashing the .pte is file work: keep it off the UI thread
        worker.execute(new Runnable() {
            @Override public void run() {
                try {
                    final Loaded loaded = load();
                    runOnUiThread(new Runnable() {
                        @Override public void run() {
                            onLoaded(loaded);
                        }
                    });
                } catch (final ModelException e) {
                    showErrorLater(e.getMessage());
                } catch (final IOException | RuntimeException e) {
                    showErrorLater(getString(R.string.load_failed, String.valueOf(e.getMessage())));
                }
            }
        });
    }

    private Loaded load() throws IOException, ModelException {
        Loaded l = new Loaded();
        try {
            l.info = ModelInfo.parse(readAsset("model.json"));
        } catch (FileNotFoundException e) {
            throw new ModelException(getString(R.string.no_model));
        }
        // ExecuTorch loads from a file path: copy the asset out, checking its sha256 against model.json on the way
        File pte = new File(getFilesDir(), "model.pte");
        File tmp = new File(getFilesDir(), "model.pte.tmp");
        InputStream in;
        try {
            in = getAssets().open("model.pte");
        } catch (FileNotFoundException e) {
            throw new ModelException(getString(R.string.no_model));
        }
        try {
            OutputStream out = new FileOutputStream(tmp);
            try {
                l.info.copyVerified(in, out);
            } finally {
                out.close();
            }
        } finally {
            in.close();
        }
        if (!tmp.renameTo(pte)) {
            throw new IOException("cannot write " + pte);
        }
        InputStream cat = getAssets().open("catalog.tsv");
        try {
            l.catalog = Catalog.load(cat);
        } finally {
            cat.close();
        }
        if (l.catalog.size() != l.info.nItems) {
            throw new ModelException(getString(R.string.mismatch, l.catalog.size(), l.info.nItems));
        }
        l.engine = ExecuTorchEngine.load(pte.getAbsolutePath(), l.info);
        return l;
    }

    private void onLoaded(Loaded l) {
        if (isDestroyed()) {       // rotated while loading: the new Activity loads its own
            l.engine.close();
            return;
        }
        info = l.info;
        catalog = l.catalog;
        engine = l.engine;
        session = restoreSession(pendingSession);
        pendingSession = null;
        status.setText(getString(R.string.model_info, info.id, info.nItems));
        showCatalog();
        showSession();
    }

    private Session restoreSession(Bundle b) {
        if (b == null) {
            return new Session(engine);
        }
        try {
            return Session.restore(engine, b.getLongArray("history"), b.getFloatArray("state"),
                    b.getLongArray("top_ids"), b.getFloatArray("top_scores"));
        } catch (RuntimeException e) {   // saved by another model (the app was updated): start over
            return new Session(engine);
        }
    }

    @Override protected void onSaveInstanceState(Bundle out) {
        super.onSaveInstanceState(out);
        if (session == null) {
            if (pendingSession != null) {
                out.putBundle(SAVED, pendingSession);   // rotated again before the model loaded
            }
            return;
        }
        Bundle b = new Bundle();
        b.putLongArray("history", session.history());
        b.putFloatArray("state", session.state());
        StepResult last = session.last();
        if (last != null) {
            b.putLongArray("top_ids", last.topIds);
            b.putFloatArray("top_scores", last.topScores);
        }
        out.putBundle(SAVED, b);
    }

    @Override protected void onDestroy() {
        worker.shutdown();
        if (engine != null) {
            engine.close();
        }
        super.onDestroy();
    }

    /** One model step. It takes well under a millisecond at these sizes, so it runs on the UI thread. */
    private void tap(long itemId) {
        if (session == null) {
            return;
        }
        try {
            session.interact(itemId);
        } catch (RuntimeException e) {
            status.setText(getString(R.string.step_failed, String.valueOf(e.getMessage())));
            return;
        }
        showSession();
    }

    private void showCatalog() {
        if (catalog == null) {
            return;
        }
        catalogIds.clear();
        catalogIds.addAll(catalog.search(search.getText().toString(), SEARCH_LIMIT));
        List<String> rows = new ArrayList<String>();
        for (long id : catalogIds) {
            rows.add(catalog.title(id));
        }
        catalogAdapter.clear();
        catalogAdapter.addAll(rows);
    }

    private void showSession() {
        long[] history = session.history();
        StringBuilder h = new StringBuilder();
        for (int i = Math.max(0, history.length - HISTORY_SHOWN); i < history.length; i++) {
            h.append(h.length() > 0 ? "  →  " : "").append(catalog.title(history[i]));
        }
        historyView.setText(history.length == 0 ? getString(R.string.new_user)
                : getString(R.string.history, history.length, h.toString()));
        recIds.clear();
        List<String> rows = new ArrayList<String>();
        for (Session.Recommendation r : session.recommendations(SHOWN)) {
            recIds.add(r.id);
            rows.add(String.format(Locale.US, "%d. %s  (%.2f)", rows.size() + 1, catalog.title(r.id), r.score));
        }
        recsAdapter.clear();
        recsAdapter.addAll(rows);
    }

    private void showErrorLater(final String message) {
        runOnUiThread(new Runnable() {
            @Override public void run() {
                if (!isDestroyed()) {
                    status.setText(message);
                }
            }
        });
    }

    private String readAsset(String name) throws IOException {
        InputStream in = getAssets().open(name);
        try {
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            byte[] buf = new byte[8192];
            for (int n; (n = in.read(buf)) > 0; ) {
                out.write(buf, 0, n);
            }
            return out.toString("UTF-8");
        } finally {
            in.close();
        }
    }
}
