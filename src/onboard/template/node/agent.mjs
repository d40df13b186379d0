// Your first agent: asks the workshop's OpenClaw agent a question and prints the answer as it
// arrives, through the official OpenAI SDK.
//
//   npm install
//   node agent.mjs "I run a bakery with three staff. Suggest a weekly workflow."
//
// It reads ../.env (your kit's settings; run setup.sh first to check them).

import { readFileSync } from "node:fs";
import OpenAI from "openai";

// OpenClaw's default agent; "openclaw/<agent id>" picks another one.
const MODEL = "openclaw";

/** The NAME=value lines of a .env file, as an object. */
function readEnv(url) {
  const values = {};
  for (const raw of readFileSync(url, "utf8").split(/\r?\n/)) {
    const line = raw.trim();
    if (!line || line.startsWith("#") || !line.includes("=")) continue;
    const at = line.indexOf("=");
    const name = line.slice(0, at).trim().replace(/^export\s+/, "");
    values[name] = line.slice(at + 1).trim().replace(/^(["'])(.*)\1$/, "$2");
  }
  return values;
}

const env = readEnv(new URL("../.env", import.meta.url));
const gatewayKey = env.EXOCLAW_GATEWAY_KEY ?? "";
const client = new OpenAI({
  baseURL: `${(env.OPENCLAW_GATEWAY_URL ?? "").replace(/\/+$/, "")}/v1`,
  // Your own OpenAI key; without one (Codex mode) the gateway key stands in.
  apiKey: env.OPENAI_API_KEY || gatewayKey,
  defaultHeaders: { "X-Gateway-Key": gatewayKey },
});

const question =
  process.argv.slice(2).join(" ") || "Say hello and tell me what you can do for my business.";
try {
  const stream = await client.chat.completions.create({
    model: MODEL,
    messages: [{ role: "user", content: question }],
    stream: true,
  });
  for await (const chunk of stream) {
    process.stdout.write(chunk.choices[0]?.delta?.content ?? "");
  }
  process.stdout.write("\n");
} catch (e) {
  console.error(`The agent could not answer: ${e.message}`);
  process.exitCode = 1;
}
