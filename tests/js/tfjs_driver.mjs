// Drives Debian's chromium with puppeteer-core for graft's TF.js tests. One JSON request on
// argv[2], one JSON answer on stdout.
//
//   {"mode": "predict", "base": "http://127.0.0.1:PORT", "model": "/export/tfjs/model.json",
//    "input": "/input.bin", "shape": [n, h, w, 3], "backends": ["cpu", "wasm"], "timing": false}
//     -> {"cpu": {"backend": "cpu", "outputs": {"probabilities": [[...]]}, "ms": ...}, ...}
//   {"mode": "page", "base": ..., "page": "/export/tfjs/index.html?backend=wasm",
//    "files": ["/abs/path/a.png", ...]}
//     -> {"backend": "wasm", "results": [{"label": "3", "probability": 0.98, "items": [...]}]}
//
// Everything is fetched from the loopback server at "base": the TF.js scripts from
// base/npm/... (tests/js/node_modules), and the page's CDN URLs are answered from there too,
// so nothing leaves the machine.
import puppeteer from "puppeteer-core";

const request = JSON.parse(process.argv[2]);
const CDN = "https://cdn.jsdelivr.net/npm/";

const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  userDataDir: request.profile,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const errors = [];
try {
  const page = await browser.newPage();
  page.on("pageerror", e => errors.push(String(e)));
  page.on("console", m => m.type() === "error" && !m.text().startsWith("Failed to load resource")
    && errors.push(m.text()));
  page.on("response", r => r.status() >= 400 && !r.url().endsWith("/favicon.ico")
    && errors.push(`${r.status()} ${r.url()}`));
  await page.setRequestInterception(true);
  page.on("request", r => {
    const url = r.url();
    if (url.startsWith(CDN)) {
      // "@tensorflow/tfjs@4.22.0/dist/x.js" -> base/npm/@tensorflow/tfjs/dist/x.js
      const rest = url.slice(CDN.length).replace(/^(@[^/]+\/[^@/]+)@[^/]+/, "$1");
      r.continue({ url: `${request.base}/npm/${rest}` });
    } else if (url.startsWith(request.base) || url.startsWith("data:") || url.startsWith("blob:")) {
      r.continue();
    } else {
      r.abort();
    }
  });
  let answer;
  if (request.mode === "predict") {
    await page.goto(`${request.base}/blank.html`);
    await page.addScriptTag({ url: `${request.base}/npm/@tensorflow/tfjs/dist/tf.min.js` });
    await page.addScriptTag({
      url: `${request.base}/npm/@tensorflow/tfjs-backend-wasm/dist/tf-backend-wasm.min.js`,
    });
    answer = {};
    for (const backend of request.backends) {
      answer[backend] = await page.evaluate(async (req, backend) => {
        tf.wasm.setWasmPaths(`${req.base}/npm/@tensorflow/tfjs-backend-wasm/dist/`);
        if (!(await tf.setBackend(backend))) throw new Error(`backend ${backend} unavailable`);
        await tf.ready();
        const model = await tf.loadGraphModel(`${req.base}${req.model}`);
        const buffer = await (await fetch(`${req.base}${req.input}`)).arrayBuffer();
        const x = tf.tensor(new Float32Array(buffer), req.shape, "float32");
        const named = model.execute(x);
        const outputs = {};
        const keys = Object.keys(model.signature?.outputs ?? { output_0: null });
        const list = Array.isArray(named) ? named : [named];
        keys.forEach((k, i) => { outputs[k] = list[i].arraySync(); });
        let msP50 = null;
        if (req.timing) {  // latency of one example: median of 10 after 3 warm-up calls
          const one = x.slice([0], [1]);
          for (let i = 0; i < 3; i++) tf.dispose(model.predict(one));
          const times = [];
          for (let i = 0; i < 10; i++) {
            const t0 = performance.now();
            const y = model.predict(one);
            await y.data();
            times.push(performance.now() - t0);
            tf.dispose(y);
          }
          times.sort((a, b) => a - b);
          msP50 = times[5];
          tf.dispose(one);
        }
        tf.dispose([x, ...list]);
        model.dispose();
        return { backend: tf.getBackend(), outputs, ms_p50: msP50 };
      }, request, backend);
    }
  } else if (request.mode === "page") {
    await page.goto(`${request.base}${request.page}`);
    try {
      await page.waitForFunction(() => document.body.dataset.ready, { timeout: 60000 });
    } catch (e) {
      const status = await page.evaluate(() => document.getElementById("status")?.textContent);
      throw new Error(`the page did not load its model: ${status}; ${errors.join("; ")}`);
    }
    const backend = await page.evaluate(() => document.body.dataset.ready);
    const results = [];
    for (const file of request.files) {
      await page.evaluate(() => { delete document.getElementById("result").dataset.label; });
      const input = await page.$("#file");
      await input.uploadFile(file);
      await page.waitForFunction(() => document.getElementById("result").dataset.label,
        { timeout: 60000 });
      results.push(await page.evaluate(() => {
        const r = document.getElementById("result");
        return {
          label: r.dataset.label,
          probability: Number(r.dataset.probability),
          items: Array.from(r.querySelectorAll("li")).map(li => li.textContent),
          status: document.getElementById("status").textContent,
        };
      }));
    }
    answer = { backend, results };
  } else {
    throw new Error(`unknown mode ${request.mode}`);
  }
  answer.errors = errors;
  process.stdout.write(JSON.stringify(answer));
} finally {
  await browser.close();
}
