// gpaisec: check an audit inclusion proof in this browser (RFC 9162 section 2.1.3.2, C2SP signed note).
// Nothing is sent anywhere: the proof comes from the text area, the verifier key from the key field,
// and every step runs here with WebCrypto. Served from the package (CSP: script-src 'self').
"use strict";

(function () {
  const enc = new TextEncoder();

  function fail(message) { throw new Error(message); }

  function hexToBytes(hex, what) {
    if (typeof hex !== "string" || !/^[0-9a-f]{64}$/.test(hex)) fail(what + " is not 32 bytes of lower-case hex");
    const out = new Uint8Array(32);
    for (let i = 0; i < 32; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16);
    return out;
  }

  function b64ToBytes(text, what) {
    if (typeof text !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) {
      fail(what + " is not base64");
    }
    const bin = atob(text);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  function toHex(bytes) {
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function equal(a, b) {
    if (a.length !== b.length) return false;
    let d = 0;
    for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
    return d === 0;
  }

  function concat(...parts) {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out;
  }

  async function sha256(bytes) {
    return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  }

  // RFC 9162 2.1.3.2: fold the proof into the leaf hash; the result must be the signed root.
  async function rootFromInclusion(leaf, index, size, proof) {
    if (!Number.isSafeInteger(index) || !Number.isSafeInteger(size) || index < 0 || index >= size) {
      fail("the leaf " + index + " is outside a tree of size " + size);
    }
    let fn = index, sn = size - 1, r = leaf;
    for (const p of proof) {
      if (sn === 0) fail("the proof has too many hashes for the tree size");
      if (fn % 2 === 1 || fn === sn) {
        r = await sha256(concat(Uint8Array.of(1), p, r));
        while (fn !== 0 && fn % 2 === 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
      } else {
        r = await sha256(concat(Uint8Array.of(1), r, p));
      }
      fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
    }
    if (sn !== 0) fail("the proof has too few hashes for the tree size");
    return r;
  }

  // A C2SP signed note: body lines, a blank line, then "— name base64(keyhash[4] || signature[64])".
  function parseCheckpoint(note) {
    const split = note.indexOf("\n\n");
    if (split < 0) fail("the checkpoint has no signature block");
    const body = note.slice(0, split + 1);
    const lines = body.split("\n");
    if (lines.length < 4) fail("the checkpoint body is too short");
    const size = Number(lines[1]);
    if (!/^[0-9]+$/.test(lines[1]) || !Number.isSafeInteger(size)) fail("the checkpoint size is not a number");
    const root = b64ToBytes(lines[2], "the checkpoint root");
    if (root.length !== 32) fail("the checkpoint root is not 32 bytes");
    const sigs = note.slice(split + 2).split("\n").filter((l) => l.length > 0).map((l) => {
      const parts = l.split(" ");
      if (parts.length !== 3 || parts[0] !== "\u2014") fail("a signature line is malformed");
      return { name: parts[1], blob: b64ToBytes(parts[2], "a signature") };
    });
    return { origin: lines[0], size, root, body, sigs };
  }

  // A signed-note verifier key: name+hash8hex+base64(0x01 || 32-byte Ed25519 public key).
  function parseVkey(vkey) {
    // The name has no "+", the hash is 8 hex digits; the key's base64 may itself contain "+".
    const m = /^([^+\s]+)\+([0-9a-f]{8})\+([A-Za-z0-9+/]+={0,2})$/.exec(vkey.trim());
    if (!m) fail("the verifier key is not name+hash+key");
    const parts = [m[1], m[2], m[3]];
    const raw = b64ToBytes(parts[2], "the verifier key");
    if (raw.length !== 33 || raw[0] !== 1) fail("the verifier key is not an Ed25519 key");
    return { name: parts[0], hash: parts[1], key: raw.slice(1), alg: raw };
  }

  async function check(proofText, vkeyText) {
    let proof;
    try { proof = JSON.parse(proofText); } catch (e) { fail("the proof is not JSON"); }
    if (!proof || typeof proof.entry !== "string" || !Array.isArray(proof.proof)) fail("the proof lacks entry or proof");
    const entry = JSON.parse(proof.entry);
    if (entry.seq !== proof.seq) fail("the entry says it is entry " + entry.seq + ", not " + proof.seq);
    const leaf = await sha256(concat(Uint8Array.of(0), enc.encode(proof.entry)));
    if (!equal(leaf, hexToBytes(proof.leaf_hash, "leaf_hash"))) fail("leaf_hash does not match the entry");
    const hashes = proof.proof.map((h, i) => hexToBytes(h, "proof hash " + i));
    const ckpt = parseCheckpoint(String(proof.checkpoint || ""));
    if (ckpt.size !== proof.tree_size) fail("the checkpoint is for size " + ckpt.size + ", the proof for " + proof.tree_size);
    if (ckpt.origin !== proof.origin) fail("the checkpoint's origin is not the proof's");
    const root = await rootFromInclusion(leaf, proof.seq, proof.tree_size, hashes);
    if (!equal(root, ckpt.root)) fail("entry " + proof.seq + " does not lead to the signed root of the tree of size " + ckpt.size);
    // The signature, with the key the auditor holds.
    const vk = parseVkey(vkeyText);
    if (vk.name !== ckpt.origin) fail("the verifier key is for " + vk.name + ", the checkpoint for " + ckpt.origin);
    const keyHash = (await sha256(concat(enc.encode(vk.name + "\n"), vk.alg))).slice(0, 4);
    if (toHex(keyHash) !== vk.hash) fail("the verifier key's hash does not match its key");
    const sig = ckpt.sigs.find((s) => s.name === vk.name && s.blob.length === 68 && equal(s.blob.slice(0, 4), keyHash));
    if (!sig) fail("no signature by this key on the checkpoint");
    let key;
    try {
      key = await crypto.subtle.importKey("raw", vk.key, { name: "Ed25519" }, false, ["verify"]);
    } catch (e) {
      return { ok: true, signature: false, seq: proof.seq, size: ckpt.size, root: toHex(root) };
    }
    const good = await crypto.subtle.verify({ name: "Ed25519" }, key, sig.blob.slice(4), enc.encode(ckpt.body));
    if (!good) fail("the checkpoint's signature does not verify with this key");
    return { ok: true, signature: true, seq: proof.seq, size: ckpt.size, root: toHex(root) };
  }

  function show(out, cls, text) {
    out.className = "check " + cls;
    out.textContent = text;
  }

  document.addEventListener("DOMContentLoaded", function () {
    const form = document.getElementById("proof-check");
    if (!form) return;
    const out = document.getElementById("proof-result");
    form.addEventListener("submit", async function (ev) {
      ev.preventDefault();
      show(out, "", "Checking…");
      try {
        if (!window.crypto || !crypto.subtle) fail("this page is not a secure context: open it over HTTPS or on localhost");
        const r = await check(document.getElementById("proof-json").value, document.getElementById("proof-vkey").value);
        if (r.signature) {
          show(out, "good", "Verified: entry " + r.seq + " is in the log of size " + r.size + " (root " + r.root.slice(0, 16) + "…), and the checkpoint's signature verifies with this key.");
        } else {
          // Without the signature the root is only what the pasted text says: not a verification.
          show(out, "warn", "Not verified: the proof folds to the checkpoint's root, but this browser cannot check Ed25519 signatures, so the root itself is unchecked; verify with `python -m gpaisec.audit.offline`.");
        }
      } catch (e) {
        show(out, "bad", "Not verified: " + e.message + ".");
      }
    });
  });
})();
