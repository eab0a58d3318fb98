/* gpaisec passkeys: sign in, confirm a fresh second factor, register a passkey.
 *
 * Served from the package (CSP: script-src 'self'); every page works without it, except the
 * ceremonies themselves, which need navigator.credentials. Options come from the API as JSON
 * (challenge and ids in base64url); answers go back as PublicKeyCredential.toJSON() gives them.
 * Every API call that uses the session carries the page's CSRF token in X-CSRF-Token.
 */
(function () {
  "use strict";

  function b64urlToBuffer(text) {
    var b64 = text.replace(/-/g, "+").replace(/_/g, "/");
    b64 += "===".slice((b64.length + 3) % 4);
    var raw = atob(b64);
    var out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out.buffer;
  }

  function bufferToB64url(buffer) {
    var bytes = new Uint8Array(buffer);
    var raw = "";
    for (var i = 0; i < bytes.length; i++) raw += String.fromCharCode(bytes[i]);
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function withIds(list) {
    return (list || []).map(function (c) {
      return Object.assign({}, c, { id: b64urlToBuffer(c.id) });
    });
  }

  function requestOptions(json) {
    if (PublicKeyCredential.parseRequestOptionsFromJSON) {
      return PublicKeyCredential.parseRequestOptionsFromJSON(json);
    }
    return Object.assign({}, json, {
      challenge: b64urlToBuffer(json.challenge),
      allowCredentials: withIds(json.allowCredentials),
    });
  }

  function creationOptions(json) {
    if (PublicKeyCredential.parseCreationOptionsFromJSON) {
      return PublicKeyCredential.parseCreationOptionsFromJSON(json);
    }
    return Object.assign({}, json, {
      challenge: b64urlToBuffer(json.challenge),
      user: Object.assign({}, json.user, { id: b64urlToBuffer(json.user.id) }),
      excludeCredentials: withIds(json.excludeCredentials),
    });
  }

  function credentialJSON(cred) {
    if (typeof cred.toJSON === "function") return cred.toJSON();
    var r = cred.response;
    var response = { clientDataJSON: bufferToB64url(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = bufferToB64url(r.attestationObject);
      response.transports = r.getTransports ? r.getTransports() : [];
    } else {
      response.authenticatorData = bufferToB64url(r.authenticatorData);
      response.signature = bufferToB64url(r.signature);
      if (r.userHandle) response.userHandle = bufferToB64url(r.userHandle);
    }
    return {
      id: cred.id,
      rawId: bufferToB64url(cred.rawId),
      type: cred.type,
      response: response,
      clientExtensionResults: cred.getClientExtensionResults(),
    };
  }

  function say(where, text) {
    var box = document.getElementById(where);
    if (!box) return;
    box.textContent = text;
    box.hidden = !text;
  }

  async function api(path, csrf, body) {
    var response = await fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body || {}),
    });
    var data = null;
    try {
      data = await response.json();
    } catch (e) {
      data = null;
    }
    if (!response.ok) {
      var detail = data && data.detail ? data.detail : "the server refused (" + response.status + ")";
      throw new Error(detail);
    }
    return data;
  }

  function refused(error) {
    // The browser's own refusals (cancelled, timed out, no matching passkey) all look alike.
    if (error && error.name === "NotAllowedError") return "no passkey was used (cancelled, timed out or none here)";
    return error && error.message ? error.message : String(error);
  }

  // Sign in: user name and password first; the assertion goes back through the form (its CSRF token).
  async function signIn(form) {
    say("passkey-status", "");
    if (!form.reportValidity()) return;
    try {
      var data = await api("/api/v1/session/webauthn", form.elements.csrf_token.value, {
        username: form.elements.username.value,
        password: form.elements.password.value,
      });
      var cred = await navigator.credentials.get({ publicKey: requestOptions(data.public_key) });
      form.elements.webauthn.value = JSON.stringify(credentialJSON(cred));
      form.elements.totp_code.value = "";
      // The device proof too (device.js); form.submit() skips the form's own submit handler.
      if (!window.gpaisecDevice) throw new Error("the device key script did not load");
      await window.gpaisecDevice.prove(form);
      form.submit();
    } catch (error) {
      say("passkey-status", "passkey sign-in failed: " + refused(error));
    }
  }

  // Confirm a fresh second factor with a passkey (step-up of this session).
  async function stepUp(csrf) {
    say("passkey-status", "");
    try {
      var data = await api("/api/v1/session/mfa/webauthn", csrf);
      var cred = await navigator.credentials.get({ publicKey: requestOptions(data.public_key) });
      await api("/api/v1/session/mfa", csrf, { webauthn: credentialJSON(cred) });
      window.location.assign("/account?done=mfa");
    } catch (error) {
      say("passkey-status", "confirming with a passkey failed: " + refused(error));
    }
  }

  // Register a new passkey for the signed-in person (needs a fresh second factor).
  async function register(csrf) {
    say("passkey-status", "");
    try {
      var data = await api("/api/v1/me/passkeys/options", csrf);
      var cred = await navigator.credentials.create({ publicKey: creationOptions(data.public_key) });
      await api("/api/v1/me/passkeys", csrf, { credential: credentialJSON(cred) });
      window.location.assign("/account?done=registered");
    } catch (error) {
      say("passkey-status", "registering a passkey failed: " + refused(error));
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (!window.PublicKeyCredential || !navigator.credentials) return; // the plain forms still work
    var login = document.querySelector("form[data-passkey-login]");
    var signInButton = document.getElementById("passkey-signin");
    if (login && signInButton) {
      signInButton.hidden = false;
      signInButton.addEventListener("click", function () {
        signIn(login);
      });
    }
    var account = document.querySelector("[data-passkeys]");
    if (account) {
      var csrf = account.getAttribute("data-csrf") || "";
      document.querySelectorAll("[data-passkey-action]").forEach(function (button) {
        button.hidden = false;
        button.addEventListener("click", function () {
          if (button.getAttribute("data-passkey-action") === "register") register(csrf);
          else stepUp(csrf);
        });
      });
    }
  });
})();
