"""The little JavaScript the page needs: keyboard shortcuts and volume uploads.

Keys typed into a field are left alone; the table's keys go to the server as a trigger. An upload is
checked against the size limit in the browser first (so a too-large file is refused before it travels),
then posted to the upload route; the returned string is the message to show ("" when all went well).
"""

from __future__ import annotations

import json

from .keys import SHORTCUTS

KEY_TRIGGER = "sammed2d_key"

_SCRIPT = """
(() => {
  const keys = new Set(%(keys)s);
  const typing = (element) => element && (element.isContentEditable
    || ["INPUT", "TEXTAREA", "SELECT"].includes(element.tagName));
  window.addEventListener("keydown", (event) => {
    if (event.repeat || typing(event.target)) return;
    const key = (event.ctrlKey || event.metaKey ? "ctrl+" : "") + (event.shiftKey ? "shift+" : "")
      + event.key.toLowerCase();
    if (!keys.has(key)) return;
    event.preventDefault();
    event.stopPropagation();
    window.trame.trigger(%(trigger)s, [key]);
  }, true);
  const mib = (bytes) => (bytes / 1048576).toFixed(0);
  window.sammed2dUpload = async (files, maxBytes) => {
    if (!files || !files.length) return "";
    const total = Array.from(files).reduce((sum, file) => sum + file.size, 0);
    if (total > maxBytes) {
      return `The upload was too large: ${mib(total)} MiB; this page accepts up to ${mib(maxBytes)} MiB.`;
    }
    const form = new FormData();
    for (const file of files) form.append("files", file, file.name);
    try {
      const response = await fetch("upload", { method: "POST", body: form, credentials: "same-origin" });
      const body = await response.json().catch(() => ({ message: response.statusText }));
      return response.ok ? "" : body.message;
    } catch (error) {
      return `The upload failed: ${error}`;
    }
  };
})();
"""


def page_script() -> str:
    keys = sorted(key for shortcut in SHORTCUTS for key in shortcut.keys)
    return _SCRIPT % {"keys": json.dumps(keys), "trigger": json.dumps(KEY_TRIGGER)}
