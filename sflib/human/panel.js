// The annotation panel's browser side (anywidget). Python (sflib/human/widget.py) owns every decision:
// this file only shows the task the kernel sends and sends back, one at a time, what the annotator pressed.
//
// Every key press and button click goes into one queue. The head of the queue is sent to the kernel with the
// token of the task on screen and how long that task has been on screen; the next one is sent only after the
// kernel has answered ("ack") *and* the task it moved to has been drawn. So a fast burst of keys is applied in
// order, none is dropped, and none answers a task that was never on screen.

const KEYS_HELP = {
  ratings: "1-7 rate · s skip · u undo · r revisit skipped",
  rankings: "a / b choose · e equal · s skip · u undo · r revisit skipped",
};

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function tidy(text) {
  // runs of blank lines shown as one blank line (long texts read single-spaced)
  return String(text || "").replace(/\r\n/g, "\n").replace(/\n{3,}/g, "\n\n").trim();
}

function render({ model, el: root }) {
  const kind = model.get("kind");
  root.classList.add("sf-panel", `sf-annotator-${kind}`);

  // ------------------------------------------------------------------ layout
  const head = el("div", "sf-head");
  const title = el("span", "sf-title");
  const bar = el("progress", "sf-progress-bar");
  const progress = el("span", "sf-progress");
  head.append(title, bar, progress);

  const guide = el("details", "sf-guide");
  guide.append(el("summary", "", "How to judge"), el("div", "sf-guide-text"));

  const task = el("details", "sf-task-head");
  task.open = true;
  const taskSummary = el("summary", "sf-task-summary", "Instruction");
  const taskText = el("div", "sf-task-text"); // instruction and input in one compact box
  const instruction = el("div", "sf-text sf-instruction");
  const inputBox = el("div", "sf-text sf-input");
  taskText.append(instruction, inputBox);
  task.append(taskSummary, taskText);

  const main = el("div", "sf-main");
  const done = el("div", "sf-done");

  const controls = el("div", "sf-controls");
  const buttons = el("div", "sf-buttons");
  const spec = model.get("buttons");
  for (const b of spec) {
    const button = el("button", `sf-button ${b.cls}`, b.label);
    button.title = b.tooltip;
    button.dataset.key = b.key;
    buttons.append(button);
  }
  const row = el("div", "sf-row");
  const skip = el("button", "sf-button sf-skip", "Skip (s)");
  skip.dataset.key = "s";
  const undo = el("button", "sf-button sf-undo", "Undo (u)");
  undo.dataset.key = "u";
  const revisit = el("button", "sf-button sf-revisit", "Revisit skipped (r)");
  revisit.dataset.key = "r";
  const keys = el("input", "sf-keys");
  keys.type = "text";
  keys.placeholder = "click here, then keys: " + KEYS_HELP[kind];
  keys.setAttribute("aria-label", "keyboard answers");
  const comment = el("input", "sf-comment");
  comment.type = "text";
  comment.placeholder = "optional comment (saved with the next answer)";
  row.append(skip, undo, revisit, keys);
  const legend = el("div", "sf-legend", model.get("legend"));
  const message = el("div", "sf-message");
  controls.append(buttons, legend, row, comment, message);

  root.append(head, guide, task, main, done, controls);

  // ------------------------------------------------------------------ view of the model
  let token = null;
  let shownAt = null; // performance.now() when the task on screen was first drawn while the panel was in view
  let visible = false;

  function startClock() {
    if (shownAt === null && visible && token !== null) shownAt = performance.now();
  }

  function showTask() {
    const t = model.get("task") || {};
    token = t.token || null;
    shownAt = null;
    const has = !!t.token;
    task.style.display = has ? "" : "none";
    main.style.display = has ? "" : "none";
    done.style.display = has ? "none" : "";
    main.replaceChildren();
    if (has) {
      instruction.textContent = tidy(t.instruction);
      inputBox.textContent = tidy(t.input);
      inputBox.style.display = t.input ? "" : "none";
      taskSummary.textContent = `Instruction — task ${t.position + 1} of ${t.total}` +
        (t.previous !== null && t.previous !== undefined ? ` (your earlier answer: ${t.previous})` : "");
      if (kind === "ratings") {
        const box = el("div", "sf-response");
        box.append(el("div", "sf-label", "Response"), el("div", "sf-text sf-response-text", tidy(t.response)));
        main.append(box);
      } else {
        const pair = el("div", "sf-pair");
        for (const side of ["a", "b"]) {
          const box = el("div", `sf-output sf-output-${side}`);
          box.append(el("div", "sf-label", `Output (${side})`),
                     el("div", "sf-text sf-response-text", tidy(t[`output_${side}`])));
          pair.append(box);
        }
        main.append(pair);
      }
    } else {
      done.textContent = model.get("done_text");
    }
    fit();
    for (const b of buttons.children) b.disabled = !has;
    skip.disabled = !has;
    // the clock starts on the frame that paints the task; queued keys go out from the frame after it, so
    // each one answers a task that has been on screen
    requestAnimationFrame(() => { startClock(); requestAnimationFrame(pump); });
  }

  function fit() {
    // the response gets the window's height less what JupyterLab and the rest of the panel take, so the
    // instruction, the response and the buttons fit on one screen (at least 8 lines of response)
    const room = Math.max(150, window.innerHeight - 500);
    for (const box of main.querySelectorAll(".sf-response-text")) box.style.maxHeight = `${room}px`;
  }
  window.addEventListener("resize", fit);

  function showProgress() {
    const p = model.get("progress") || {};
    title.textContent = model.get("title");
    bar.max = Math.max(p.total || 0, 1);
    bar.value = (p.total || 0) - (p.remaining || 0);
    progress.textContent = `${(p.total || 0) - (p.remaining || 0)} / ${p.total || 0} done ` +
      `(${p.answered || 0} answered, ${p.skipped || 0} skipped)`;
    revisit.disabled = !(p.skipped > 0);
  }

  function showMessage() {
    const m = model.get("message") || {};
    message.textContent = m.text || "";
    message.className = "sf-message" + (m.level === "error" ? " sf-error" : "");
  }

  function showComment() {
    comment.value = (model.get("comment") || {}).text || "";
  }

  root.querySelector(".sf-guide-text").textContent = model.get("guide");
  model.on("change:task", showTask);
  model.on("change:progress", showProgress);
  model.on("change:message", showMessage);
  model.on("change:title", showProgress);
  model.on("change:comment", showComment);

  // ------------------------------------------------------------------ the queue
  const queue = [];
  let waiting = null; // {seq} sent, no ack yet
  let acked = null;   // the token the kernel moved to, until it is drawn
  let seq = 0;

  function pump() {
    if (waiting !== null || queue.length === 0) return;
    if (acked !== null && acked !== token) return; // the new task is not drawn yet
    acked = null;
    const key = queue.shift();
    seq += 1;
    const latency = shownAt === null ? null : (performance.now() - shownAt) / 1000;
    waiting = seq;
    model.send({ type: "key", key, seq, token, latency_s: latency, comment: comment.value });
  }

  model.on("msg:custom", (msg) => {
    if (!msg || msg.type !== "ack" || msg.seq !== waiting) return;
    waiting = null;
    acked = msg.token || null;
    if (acked === token || acked === null) acked = null;
    requestAnimationFrame(() => requestAnimationFrame(pump));
  });

  function press(key) {
    queue.push(key);
    pump();
  }

  root.addEventListener("click", (event) => {
    const button = event.target.closest("button.sf-button");
    if (!button || button.disabled) return;
    press(button.dataset.key);
    keys.focus(); // focus stays where the keys are read
  });
  keys.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.key.length !== 1) return;
    event.preventDefault();
    event.stopPropagation();
    press(event.key.toLowerCase());
  });
  keys.addEventListener("input", () => { keys.value = ""; }); // e.g. a paste: nothing is typed into the box

  const observer = new IntersectionObserver((entries) => {
    visible = entries.some((e) => e.isIntersecting);
    startClock();
  }, { threshold: 0.3 });
  observer.observe(root);

  showProgress();
  showMessage();
  showComment();
  showTask();
  return () => { observer.disconnect(); window.removeEventListener("resize", fit); };
}

export default { render };
