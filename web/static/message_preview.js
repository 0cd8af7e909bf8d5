// The message as the contact will see it: image (if any) with the text as its caption, in a chat
// bubble. Used by the campaign form and the sequence builder; updates as the owner types.
//   messagePreview(box, {text, imageUrl})   imageUrl: a stored /media/<id>, a data: or blob: URL
(function () {
  "use strict";
  const SAMPLE = { name: "Aisha", phone: "60123456789" };

  function render(text) {   // placeholders filled with a sample contact; spintax shows its first choice
    return (text || "").replace(/\{(name|phone)\}/g, (_, k) => SAMPLE[k])
      .replace(/\{([^{}|]*)\|[^{}]*\}/g, "$1");
  }

  window.messagePreview = function (box, { text, imageUrl }) {
    box.replaceChildren();
    const bubble = document.createElement("figure");
    bubble.className = "preview-bubble";
    if (imageUrl) {
      const img = document.createElement("img");
      img.src = imageUrl;
      img.alt = "image sent with the message";
      bubble.appendChild(img);
    }
    const caption = document.createElement("figcaption");
    caption.textContent = render(text) || "(no message yet)";
    bubble.appendChild(caption);
    box.appendChild(bubble);
  };

  // Wires a form's message and image fields to a preview box; returns a function to refresh it.
  window.messagePreview.bind = function (box, { textField, urlField, fileField, storedUrl }) {
    let fileUrl = null;
    const usable = (u) => /^(\/media\/\d+|data:image\/|blob:)/.test(u || "") ? u : null;
    const refresh = () => window.messagePreview(box, {
      text: textField.value, imageUrl: fileUrl || usable(urlField && urlField.value) || (storedUrl && storedUrl()) });
    textField.addEventListener("input", refresh);
    if (urlField) urlField.addEventListener("input", refresh);
    if (fileField) fileField.addEventListener("change", () => {
      if (fileUrl) URL.revokeObjectURL(fileUrl);
      fileUrl = fileField.files[0] ? URL.createObjectURL(fileField.files[0]) : null;
      refresh();
    });
    refresh();
    return refresh;
  };
})();
