"""Your first agent: asks the workshop's OpenClaw agent a question and prints the answer as it
arrives, through the official OpenAI SDK.

    pip install -r requirements.txt
    python agent.py "I run a bakery with three staff. Suggest a weekly workflow."

It reads ../.env (your kit's settings; run setup.sh first to check them).
"""

import sys
from pathlib import Path

from openai import OpenAI, OpenAIError

# OpenClaw's default agent; "openclaw/<agent id>" picks another one.
MODEL = "openclaw"


def read_env(path):
    """The NAME=value lines of a .env file, as a dict."""
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, value = line.split("=", 1)
        name = name.strip()
        if name.startswith("export "):
            name = name[len("export "):].strip()
        values[name] = value.strip().strip('"').strip("'")
    return values


def main():
    env = read_env(Path(__file__).resolve().parent.parent / ".env")
    gateway_key = env.get("EXOCLAW_GATEWAY_KEY", "")
    client = OpenAI(
        base_url=env.get("OPENCLAW_GATEWAY_URL", "").rstrip("/") + "/v1",
        # Your own OpenAI key; without one (Codex mode) the gateway key stands in.
        api_key=env.get("OPENAI_API_KEY") or gateway_key,
        default_headers={"X-Gateway-Key": gateway_key},
    )
    question = " ".join(sys.argv[1:]) or "Say hello and tell me what you can do for my business."
    try:
        stream = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": question}],
            stream=True,
        )
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                print(chunk.choices[0].delta.content, end="", flush=True)
        print()
    except OpenAIError as e:
        sys.exit(f"The agent could not answer: {e}")


if __name__ == "__main__":
    main()
