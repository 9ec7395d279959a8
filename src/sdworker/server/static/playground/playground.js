// The sdworker playground: a client of the endpoint's public API, and an example of it.
//
//   GET  playground/config            what to offer: models (each with its family's defaults,
//                                     fields and samplers), LoRAs, limits
//   POST v2/{endpoint}/run            {"input": {...}} -> {"id", "status": "IN_QUEUE"}
//   GET  v2/{endpoint}/status/{id}    while IN_PROGRESS, output = {"step", "steps", "progress"}
//   POST v2/{endpoint}/cancel/{id}    stops the job between denoising steps
//
// Paths are relative, so the page also works behind a proxy that mounts it under a prefix.
"use strict";

(() => {
  const KEY_STORE = "sdworker.apiKey";
  const POLL_MS = 150;
  const FINAL = new Set(["COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"]);
  /** native field -> the id of the element its error is shown beside */
  const ERROR_SLOT = {
    num_images_per_prompt: "num_images",
    lora: "lora",
  };
  /** the family fields the page sends as numbers, each from the input of its own name */
  const FAMILY_NUMBERS = [
    "clip_skip",
    "true_cfg_scale",
    "max_sequence_length",
    "refiner_inference_steps",
    "high_noise_frac",
  ];
  /** what the form says of a family, by what its guidance is */
  const GUIDANCE_LABEL = { cfg: "Guidance", distilled: "Guidance (distilled)" };

  const $ = (id) => document.getElementById(id);
  let config = null;
  let current = null; // the job being followed: {id, input, cancelRequested}
  const images = { image: null, mask_image: null };

  class AuthError extends Error {}
  class HttpError extends Error {}

  // ---- the API -----------------------------------------------------------------------------

  function apiKey() {
    return sessionStorage.getItem(KEY_STORE) || "";
  }

  async function api(method, path, body) {
    const headers = {};
    if (apiKey()) headers.Authorization = "Bearer " + apiKey();
    const init = { method, headers };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    const message = (data && data.error) || `${response.status} ${response.statusText}`;
    if (response.status === 401) throw new AuthError(message);
    if (!response.ok) throw new HttpError(message);
    return data;
  }

  /** Run ``call``; when the endpoint wants a key, ask for it (once per session) and retry. */
  async function withKey(call) {
    for (;;) {
      try {
        return await call();
      } catch (err) {
        if (!(err instanceof AuthError)) throw err;
        await askForKey(apiKey() ? "That key was refused; try again." : "");
      }
    }
  }

  function askForKey(message) {
    const dialog = $("key-dialog");
    $("key-error").textContent = message;
    $("key-input").value = "";
    return new Promise((resolve) => {
      const form = $("key-form");
      form.onsubmit = (event) => {
        event.preventDefault();
        const key = $("key-input").value.trim();
        if (!key) return;
        sessionStorage.setItem(KEY_STORE, key);
        $("forget-key").hidden = false;
        dialog.close();
        resolve();
      };
      dialog.oncancel = (event) => event.preventDefault(); // Escape: the key is still needed
      if (!dialog.open) dialog.showModal();
      $("key-input").focus();
    });
  }

  const endpointPath = (rest) => `v2/${encodeURIComponent(config.endpoint_id)}/${rest}`;

  // ---- the form ----------------------------------------------------------------------------

  function option(value, label) {
    const el = document.createElement("option");
    el.value = value;
    el.textContent = label === undefined ? value : label;
    return el;
  }

  function fillForm() {
    document.querySelectorAll(".endpoint-id").forEach((el) => {
      el.textContent = config.endpoint_id;
    });
    const model = $("model");
    model.replaceChildren(...config.models.map((m) => option(m.name, `${m.name} (${m.label})`)));
    if (config.default_model) model.value = config.default_model;
    $("lora").append(...config.loras.map((name) => option(name)));
    const limits = config.limits;
    for (const id of ["width", "height"]) {
      Object.assign($(id), { min: limits.min_side, max: limits.max_side, step: limits.side_step });
    }
    $("steps").max = limits.max_steps;
    $("guidance").max = limits.max_guidance;
    $("num_images").max = limits.max_images;
    $("seed").max = limits.max_seed;
    modelChanged();
    if (!config.models.length) {
      showGeneral("No model is baked yet: run `sdworker bake tiny` (or another model) first.");
      $("generate").disabled = true;
    }
  }

  /** The model chosen (its manifest's facts and its family's rules), or undefined. */
  function currentModel() {
    return config ? config.models.find((m) => m.name === $("model").value) : undefined;
  }

  /** Whether the native field ``field`` applies to the model chosen. */
  function applies(field) {
    const model = currentModel();
    return !model || model.fields.includes(field);
  }

  function modelSize() {
    const model = currentModel();
    if (!model) return;
    $("width").value = model.defaults.width;
    $("height").value = model.defaults.height;
  }

  /** Show the model's own fields only, with its defaults, samplers and size rule. */
  function modelChanged() {
    const model = currentModel();
    if (!model) return;
    const defaults = model.defaults;
    if (images.image === null) modelSize();
    for (const id of ["width", "height"]) $(id).step = model.side_step;
    $("steps").value = defaults.num_inference_steps;
    $("guidance").value = defaults.guidance_scale;
    $("strength").value = defaults.strength;
    $("guidance-label").textContent = GUIDANCE_LABEL[model.guidance] || "Guidance";
    document.querySelectorAll("[data-family-field]").forEach((el) => {
      el.hidden = !model.fields.includes(el.dataset.familyField);
    });
    $("model-options").hidden = model.fields.length === 0;
    $("family-label").textContent = `${model.label} models`;
    $("family-hint").textContent = familyHint(model);
    document.querySelector('[data-field="negative_prompt"]').hidden = !model.negative_prompt;
    if (model.max_sequence_length) $("max_sequence_length").max = model.max_sequence_length;
    $("max_sequence_length").placeholder = String(defaults.max_sequence_length ?? "");
    const chosen = $("sampler").value;
    $("sampler").replaceChildren(
      option("", "model default"),
      ...model.samplers.map((s) => option(s.name, s.label)),
    );
    if (model.samplers.some((s) => s.name === chosen)) $("sampler").value = chosen;
    samplerChanged();
    imageFieldsChanged();
  }

  function familyHint(model) {
    if (model.guidance !== "distilled") return "";
    if (!model.negative_prompt) return "Guidance is the model's distilled guidance; it reads no negative prompt.";
    return "Guidance is the model's distilled guidance; a negative prompt needs a true CFG above 1.";
  }

  function samplerChanged() {
    const model = currentModel();
    const sampler = model && model.samplers.find((s) => s.name === $("sampler").value);
    const schedules = sampler ? sampler.schedules : [];
    $("schedule").replaceChildren(option("", "Automatic"), ...schedules.map((s) => option(s)));
    $("schedule").disabled = schedules.length === 0;
  }

  /** Whether the image picked is denoised from a strength (not an instruction edit). */
  function takesStrength() {
    const model = currentModel();
    return images.mask_image !== null || !model || model.image_mode !== "edit";
  }

  function imageFieldsChanged() {
    const model = currentModel();
    const hasImage = images.image !== null;
    $("mask").disabled = !hasImage;
    $("strength").disabled = !hasImage || !takesStrength();
    if (!model) return;
    const edit = model.image_mode === "edit";
    $("image-summary").textContent = edit
      ? "Start from an image (an edit by instruction, inpaint)"
      : "Start from an image (img2img, inpaint)";
    let hint = "";
    if (!model.txt2img) hint = `${model.label} models need an image and a mask to repaint.`;
    else if (edit) hint = "The prompt says how to change the image; a mask repaints only its white part.";
    $("image-hint").textContent = hint;
  }

  function seedToggled() {
    const random = $("random-seed").checked;
    $("seed").disabled = random;
    if (!random && $("seed").value === "") {
      $("seed").value = Math.floor(Math.random() * 2 ** 31);
    }
  }

  function readFile(file) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result);
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(file);
    });
  }

  async function imagePicked(field, input) {
    const file = input.files && input.files[0];
    images[field] = file ? await readFile(file) : null;
    const hasImage = images.image !== null;
    if (field === "image") {
      // img2img keeps the image's own size unless a size is typed in
      for (const id of ["width", "height"]) $(id).placeholder = hasImage ? "image's size" : "";
      if (hasImage) $("width").value = $("height").value = "";
      else modelSize();
    }
    imageFieldsChanged();
    $("clear-images").disabled = !hasImage && images.mask_image === null;
    const previews = $("previews");
    previews.replaceChildren();
    for (const [name, data] of Object.entries(images)) {
      if (!data) continue;
      const img = document.createElement("img");
      img.src = data;
      img.alt = name === "image" ? "input image" : "mask";
      previews.append(img);
    }
  }

  function clearImages() {
    for (const id of ["image", "mask"]) $(id).value = "";
    images.image = images.mask_image = null;
    imagePicked("image", $("image"));
  }

  /** A form value as a number, or undefined when empty (the API's default then applies). */
  function number(id) {
    const text = $(id).value.trim();
    return text === "" ? undefined : Number(text);
  }

  /** The job's input: the fields the model chosen takes, as the form has them. */
  function buildInput() {
    const model = currentModel();
    const input = { prompt: $("prompt").value };
    const negative = $("negative_prompt").value;
    if (negative.trim() && (!model || model.negative_prompt)) input.negative_prompt = negative;
    if ($("model").value) input.model = $("model").value;
    if ($("sampler").value) {
      input.scheduler = [$("sampler").value, $("schedule").value].filter(Boolean).join(" ");
    }
    const numbers = {
      width: "width",
      height: "height",
      num_inference_steps: "steps",
      guidance_scale: "guidance",
      num_images: "num_images",
    };
    for (const [field, id] of Object.entries(numbers)) {
      const value = number(id);
      if (value !== undefined) input[field] = value;
    }
    if (!$("random-seed").checked && number("seed") !== undefined) input.seed = number("seed");
    if ($("lora").value) input.lora = [{ name: $("lora").value, scale: number("lora_scale") ?? 1 }];
    if (applies("use_compel") && $("use_compel").checked) input.use_compel = true;
    for (const field of FAMILY_NUMBERS) {
      const value = applies(field) ? number(field) : undefined;
      if (value !== undefined) input[field] = value;
    }
    if (applies("hires") && $("hires").checked && !images.image) {
      input.hires = { scale: number("hires_scale") ?? 2, strength: number("hires_strength") ?? 0.7 };
    }
    if (images.image) {
      input.image = images.image;
      const strength = number("strength");
      if (strength !== undefined && takesStrength()) input.strength = strength;
      if (images.mask_image) input.mask_image = images.mask_image;
    }
    return input;
  }

  // ---- errors ------------------------------------------------------------------------------

  /** A failed job's problems: the structured ``output.failure.problems`` when the endpoint
   * sends them, else parsed from ``error`` ("invalid input: field: rule (got v); ..."). */
  function problemsOf(body) {
    const failure = body.output && typeof body.output === "object" ? body.output.failure : null;
    if (failure && Array.isArray(failure.problems) && failure.problems.length) {
      return failure.problems.map((p) => {
        let message = String(p.message ?? p.rule ?? "is not valid");
        if ("value" in p && !message.includes("(got")) {
          message += ` (got ${typeof p.value === "string" ? p.value : JSON.stringify(p.value)})`;
        }
        return { field: p.field ? String(p.field) : null, message };
      });
    }
    return parseError(body.error || "the job failed");
  }

  function parseError(text) {
    const prefix = "invalid input:";
    if (!text.startsWith(prefix)) return [{ field: null, message: text }];
    const problems = [];
    // "; " also occurs inside a rule ("unknown model; baked models: a, b"): a part starts a
    // new problem only when it begins with a field name
    for (const part of text.slice(prefix.length).trim().split("; ")) {
      const match = /^([A-Za-z_][\w.[\]]*): ([\s\S]*)$/.exec(part);
      if (match) problems.push({ field: match[1], message: match[2] });
      else if (problems.length) problems[problems.length - 1].message += "; " + part;
      else problems.push({ field: null, message: part });
    }
    return problems;
  }

  function slotFor(field) {
    if (!field) return null;
    const root = field.split(/[.[]/)[0];
    const slot = $("error-" + (ERROR_SLOT[root] || root));
    return slot && slot.id !== "error-general" ? slot : null;
  }

  function showProblems(problems) {
    const general = [];
    for (const problem of problems) {
      const slot = slotFor(problem.field);
      if (!slot) {
        general.push(problem.field ? `${problem.field}: ${problem.message}` : problem.message);
        continue;
      }
      slot.textContent = slot.textContent ? `${slot.textContent}; ${problem.message}` : problem.message;
      const field = slot.closest(".field");
      field.classList.add("invalid");
      field.querySelectorAll("input, select, textarea").forEach((el) => {
        el.setAttribute("aria-invalid", "true");
      });
    }
    if (general.length) showGeneral(general.join("\n"));
    const first = document.querySelector(".field.invalid input, .field.invalid select, .field.invalid textarea");
    if (first) first.focus();
  }

  function showGeneral(message) {
    $("error-general").textContent = message;
  }

  function clearErrors() {
    document.querySelectorAll(".error").forEach((el) => {
      el.textContent = "";
    });
    document.querySelectorAll(".field.invalid").forEach((el) => el.classList.remove("invalid"));
    document.querySelectorAll("[aria-invalid]").forEach((el) => el.removeAttribute("aria-invalid"));
  }

  // ---- running a job -----------------------------------------------------------------------

  function setState(state, text, fraction) {
    document.body.dataset.state = state;
    $("status").textContent = text;
    if (fraction !== undefined) {
      $("progress").value = fraction;
      $("progress").setAttribute("value", String(fraction));
    }
  }

  function progressText(update, input, started) {
    const { step, steps, progress } = update;
    const count = input.num_images || 1;
    let text = `Step ${step}/${steps}`;
    if (count > 1 && steps) {
      const image = Math.min(count, Math.max(1, Math.ceil(step / (steps / count))));
      text += ` · image ${image}/${count}`;
    }
    const elapsed = (Date.now() - started) / 1000;
    if (progress > 0 && progress < 1) {
      text += ` · ~${Math.max(0, Math.round((elapsed * (1 - progress)) / progress))} s left`;
    }
    return text;
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  async function follow(job) {
    let started = null;
    for (;;) {
      const body = await withKey(() => api("GET", endpointPath(`status/${job.id}`)));
      const status = body.status;
      if (status === "IN_QUEUE") {
        setState("queued", "Queued…", 0);
      } else if (status === "IN_PROGRESS") {
        const update = body.output;
        if (update && typeof update.progress === "number") {
          started = started ?? Date.now();
          setState("running", progressText(update, job.input, started), update.progress);
        } else {
          setState("running", "Loading the model…");
        }
      } else if (FINAL.has(status)) {
        return body;
      }
      await sleep(POLL_MS);
    }
  }

  async function generate(event) {
    event.preventDefault();
    if (current) return;
    clearErrors();
    const input = buildInput();
    $("generate").disabled = true;
    setState("submitting", "Submitting…", 0);
    try {
      const submitted = await withKey(() => api("POST", endpointPath("run"), { input }));
      current = { id: submitted.id, input, cancelRequested: false, submitted: Date.now() };
      $("cancel").disabled = false;
      const body = await follow(current);
      finish(current, body);
    } catch (err) {
      setState("failed", current ? "Lost track of the job" : "Not submitted", 0);
      if (err instanceof HttpError) showProblems(parseError(err.message));
      else showGeneral(err.message);
    } finally {
      current = null;
      $("generate").disabled = false;
      $("cancel").disabled = true;
    }
  }

  function finish(job, body) {
    const seconds = ((Date.now() - job.submitted) / 1000).toFixed(1);
    if (body.status === "COMPLETED") {
      setState("done", `Done in ${seconds} s (job ${job.id})`, 1);
      addResults(job.input, Array.isArray(body.output) ? body.output : []);
    } else if (body.status === "CANCELLED") {
      setState("cancelled", `Cancelled (job ${job.id})`);
    } else if (body.status === "TIMED_OUT") {
      setState("failed", `Timed out (job ${job.id})`);
      showGeneral(body.error || "the job ran past its execution timeout");
    } else {
      setState("failed", `Failed (job ${job.id})`, 0);
      showProblems(problemsOf(body));
    }
  }

  async function cancel() {
    if (!current || current.cancelRequested) return;
    current.cancelRequested = true;
    $("cancel").disabled = true;
    $("status").textContent = "Cancelling…";
    try {
      await withKey(() => api("POST", endpointPath(`cancel/${current.id}`)));
    } catch (err) {
      showGeneral(err.message);
    }
  }

  // ---- the gallery -------------------------------------------------------------------------

  const MIME = { png: "image/png", jpeg: "image/jpeg", webp: "image/webp" };

  function describe(input) {
    const name = input.model || config.default_model;
    const model = config.models.find((m) => m.name === name);
    const defaults = model ? model.defaults : {};
    const parts = [name || "default model"];
    parts.push(input.scheduler || "model's sampler");
    if (input.width && input.height) parts.push(`${input.width}×${input.height}`);
    const guidance = model && model.guidance === "distilled" ? "guidance" : "cfg";
    parts.push(`${input.num_inference_steps ?? defaults.num_inference_steps} steps`);
    parts.push(`${guidance} ${input.guidance_scale ?? defaults.guidance_scale}`);
    if (input.true_cfg_scale) parts.push(`true cfg ${input.true_cfg_scale}`);
    if (input.lora) parts.push(input.lora.map((l) => `LoRA ${l.name} ×${l.scale}`).join(", "));
    if (input.image) parts.push(input.mask_image ? "inpaint" : `img2img ${input.strength ?? 0.8}`);
    return parts.join(" · ");
  }

  function addResults(input, outputs) {
    $("empty-gallery").hidden = true;
    const gallery = $("gallery");
    for (const output of [...outputs].reverse()) {
      const format = output.format || "png";
      const src = output.image ? `data:${MIME[format] || "image/png"};base64,${output.image}` : output.url;
      const item = document.createElement("li");
      item.className = "result";
      item.dataset.seed = output.seed;

      const img = document.createElement("img");
      img.src = src;
      img.alt = `seed ${output.seed}: ${input.prompt}`;
      img.loading = "lazy";

      const meta = document.createElement("div");
      meta.className = "meta";
      const seed = document.createElement("p");
      seed.className = "seed";
      seed.textContent = `seed ${output.seed}`;
      const prompt = document.createElement("p");
      prompt.className = "prompt";
      prompt.textContent = input.prompt;
      const settings = document.createElement("p");
      settings.className = "settings";
      settings.textContent = describe(input);
      meta.append(seed, prompt, settings);
      if (output.nsfw_content_detected) {
        const flag = document.createElement("p");
        flag.className = "flag";
        flag.textContent = "flagged by the safety checker (blacked out)";
        meta.append(flag);
      }

      const actions = document.createElement("div");
      actions.className = "actions";
      const reuse = document.createElement("button");
      reuse.type = "button";
      reuse.className = "secondary reuse";
      reuse.textContent = "Reuse this seed";
      reuse.addEventListener("click", () => {
        $("random-seed").checked = false;
        $("seed").disabled = false;
        $("seed").value = output.seed;
        $("num_images").value = 1;
        $("seed").focus();
      });
      const download = document.createElement("a");
      download.className = "button secondary download";
      download.href = src;
      download.download = `sdworker-${output.seed}.${format === "jpeg" ? "jpg" : format}`;
      download.textContent = "Download";
      actions.append(reuse, download);

      item.append(img, meta, actions);
      gallery.prepend(item);
    }
  }

  // ---- start -------------------------------------------------------------------------------

  async function start() {
    $("forget-key").hidden = !apiKey();
    $("forget-key").addEventListener("click", () => {
      sessionStorage.removeItem(KEY_STORE);
      $("forget-key").hidden = true;
    });
    $("form").addEventListener("submit", generate);
    $("cancel").addEventListener("click", cancel);
    $("model").addEventListener("change", modelChanged);
    $("sampler").addEventListener("change", samplerChanged);
    $("random-seed").addEventListener("change", seedToggled);
    $("lora").addEventListener("change", () => {
      $("lora_scale").disabled = !$("lora").value;
    });
    $("hires").addEventListener("change", () => {
      for (const id of ["hires_scale", "hires_strength"]) $(id).disabled = !$("hires").checked;
    });
    $("image").addEventListener("change", () => imagePicked("image", $("image")));
    $("mask").addEventListener("change", () => imagePicked("mask_image", $("mask")));
    $("clear-images").addEventListener("click", clearImages);
    samplerChanged();
    try {
      config = await withKey(() => api("GET", "playground/config"));
    } catch (err) {
      setState("failed", "The endpoint could not be reached");
      showGeneral(err.message);
      $("generate").disabled = true;
      return;
    }
    fillForm();
    setState("idle", "Ready", 0);
  }

  start();
})();
