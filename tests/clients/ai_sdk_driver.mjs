// The Vercel AI SDK (`ai`, `@ai-sdk/openai`, `@ai-sdk/anthropic`) against the proxy, for test_ai_sdk.py.
// Usage: node ai_sdk_driver.mjs BASE_URL KEY API CALL MODEL
//   API: responses (createOpenAI()(model), the SDK's default: /v1/responses), chat (.chat(model):
//   /v1/chat/completions), anthropic (createAnthropic()(model): /v1/messages)
//   CALL: generate (generateText), stream (streamText), tool (a tool the model calls, run by the SDK, then the
//   answer: two calls), object (structured output: a JSON schema)
// Prints one JSON line: {text, usage, steps} or {error, status, body}.
import { generateText, jsonSchema, Output, stepCountIs, streamText, tool } from 'ai';
import { createAnthropic } from '@ai-sdk/anthropic';
import { createOpenAI } from '@ai-sdk/openai';

const [, , base, key, api, call, modelName] = process.argv;
const model =
  api === 'anthropic'
    ? createAnthropic({ baseURL: base + '/v1', apiKey: key })(modelName)
    : api === 'chat'
      ? createOpenAI({ baseURL: base + '/v1', apiKey: key }).chat(modelName)
      : createOpenAI({ baseURL: base + '/v1', apiKey: key })(modelName);

const weather = tool({
  description: 'Get the weather for a city',
  inputSchema: jsonSchema({ type: 'object', properties: { city: { type: 'string' } }, required: ['city'] }),
  execute: async ({ city }) => `Sunny in ${city}`,
});
const person = jsonSchema({
  type: 'object',
  properties: { name: { type: 'string' }, age: { type: 'integer' } },
  required: ['name', 'age'],
  additionalProperties: false,
});

async function run() {
  const opts = { model, maxOutputTokens: 64, maxRetries: 0 };
  if (call === 'generate') {
    const r = await generateText({ ...opts, prompt: 'Say hello in one short sentence.' });
    return { text: r.text, usage: r.totalUsage, steps: r.steps.length };
  }
  if (call === 'stream') {
    const r = streamText({ ...opts, prompt: 'Name three colours.', onError: () => {} });
    let text = '';
    for await (const part of r.textStream) text += part;
    return { text, usage: await r.totalUsage, steps: (await r.steps).length };
  }
  if (call === 'tool') {
    const r = await generateText({
      ...opts,
      prompt: 'What is the weather in Paris?',
      tools: { weather },
      stopWhen: stepCountIs(3),
    });
    return { text: r.text, usage: r.totalUsage, steps: r.steps.length };
  }
  if (call === 'object') {
    const r = await generateText({ ...opts, prompt: 'A person.', output: Output.object({ schema: person }) });
    return { text: JSON.stringify(r.output), usage: r.totalUsage, steps: r.steps.length };
  }
  throw new Error(`unknown call ${call}`);
}

try {
  console.log(JSON.stringify(await run()));
} catch (e) {
  console.log(JSON.stringify({ error: String(e.message ?? e), status: e.statusCode ?? null, body: e.responseBody ?? null }));
}
