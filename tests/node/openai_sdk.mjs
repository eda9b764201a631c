// The official `openai` npm package against a live pollama server.
//
// Driven by tests/server/api/test_openai_api.py::test_node_openai_sdk, which
// starts the server and passes POLLAMA_URL, CHAT_MODEL and EMBED_MODEL. Prints
// one JSON object with what it saw; any failed check throws (exit code 1).
import assert from "node:assert/strict";
import OpenAI, { NotFoundError, BadRequestError } from "openai";

const client = new OpenAI({ baseURL: `${process.env.POLLAMA_URL}/v1`, apiKey: "pollama", maxRetries: 0 });
const chatModel = process.env.CHAT_MODEL;
const embedModel = process.env.EMBED_MODEL;
const messages = [{ role: "user", content: "Say something" }];
const sampling = { temperature: 0, seed: 7, max_tokens: 12 };

const whole = await client.chat.completions.create({ model: chatModel, messages, ...sampling });
assert.equal(whole.object, "chat.completion");
assert.ok(whole.id.startsWith("chatcmpl-"));
assert.equal(whole.choices[0].message.role, "assistant");
assert.equal(whole.choices[0].finish_reason, "length");
assert.equal(whole.usage.completion_tokens, 12);

const stream = await client.chat.completions.create({ model: chatModel, messages, ...sampling, stream: true, stream_options: { include_usage: true } });
let text = "";
let finish = null;
let usage = null;
let chunks = 0;
for await (const chunk of stream) {
  chunks += 1;
  if (chunk.usage) usage = chunk.usage;
  for (const choice of chunk.choices) {
    text += choice.delta.content ?? "";
    if (choice.finish_reason) finish = choice.finish_reason;
  }
}
assert.equal(text, whole.choices[0].message.content, "stream and non-stream agree");
assert.equal(finish, "length");
assert.equal(usage.completion_tokens, 12);

// The SDK's stream helper accumulates the same message.
const runner = client.chat.completions.stream({ model: chatModel, messages, ...sampling });
const completion = await runner.finalChatCompletion();
assert.equal(completion.choices[0].message.content, text);

const floats = await client.embeddings.create({ model: embedModel, input: ["hello world", "goodbye"], encoding_format: "float" });
const decoded = await client.embeddings.create({ model: embedModel, input: ["hello world", "goodbye"] }); // SDK default: base64, decoded by the SDK
assert.equal(floats.data.length, 2);
for (let i = 0; i < 2; i++) {
  assert.equal(decoded.data[i].embedding.length, floats.data[i].embedding.length);
  decoded.data[i].embedding.forEach((x, j) => assert.ok(Math.abs(x - floats.data[i].embedding[j]) < 1e-6));
}

const models = [];
for await (const model of client.models.list()) models.push(model.id);
assert.ok(models.includes(`${chatModel}:latest`));

let notFound = null;
try {
  await client.chat.completions.create({ model: "no-such-model", messages });
} catch (err) {
  notFound = err;
}
assert.ok(notFound instanceof NotFoundError, `expected NotFoundError, got ${notFound}`);

let badRequest = null;
try {
  await client.chat.completions.create({ model: chatModel, messages: [] });
} catch (err) {
  badRequest = err;
}
assert.ok(badRequest instanceof BadRequestError, `expected BadRequestError, got ${badRequest}`);

console.log(JSON.stringify({ ok: true, text, chunks, usage, models, dims: floats.data[0].embedding.length, notFound: notFound.message, badRequest: badRequest.message }));
