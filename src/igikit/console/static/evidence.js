// igikit console: explanations of the AI tracker's answer, shown next to the frame.
// Uses console.js's page-wide helpers ($, me, post, toast, stats), loaded before this file.
"use strict";

(() => {
  const panel = $("evidence");
  let shownSeq = null;

  function show(seq, caption) {
    if (seq === shownSeq) return;
    shownSeq = seq;
    const img = $("evidence-img");
    img.onload = () => { $("evidence-status").textContent = `record #${seq}`; window.igikitEvidence = { seq, loaded: true }; };
    img.onerror = () => { $("evidence-status").textContent = `record #${seq}: evidence not available`; };
    img.src = `/api/evidence/${seq}`;
    $("evidence-caption").textContent = caption || "";
    $("evidence-figure").hidden = false;
  }

  async function explain() {
    const button = $("explain");
    button.disabled = true;
    const frameId = stats.lastFrameId;
    $("evidence-status").textContent = `explaining frame ${frameId}…`;
    try {
      const result = await post("/api/evidence", { frame_id: frameId });
      if (result.ok) show(result.data.seq, result.data.explanation);
      else $("evidence-status").textContent = result.data.detail || "not explained";
    } finally {
      button.disabled = false;
    }
  }

  // An explanation anyone asked for appears in the log; clicking it shows its map here.
  $("log").addEventListener("click", (event) => {
    const item = event.target.closest('li[data-kind="evidence"]');
    if (item && item.dataset.seq) show(Number(item.dataset.seq), item.querySelector(".text").textContent);
  });
  $("explain").addEventListener("click", explain);

  // console.js sets `me` at login and clears it at logout; the button is offered only when the
  // session has an AI tracker to explain; otherwise the panel says why, when the server says.
  const note = document.createElement("span");
  note.id = "evidence-note";
  note.className = "muted";
  note.hidden = true;
  $("explain").parentElement.appendChild(note);
  setInterval(() => {
    const why = (me && !me.explain && me.explain_unavailable) || "";
    panel.hidden = !(me && (me.explain || why));
    $("explain").hidden = !(me && me.explain);
    note.hidden = !why;
    note.textContent = why;
  }, 250);
})();
