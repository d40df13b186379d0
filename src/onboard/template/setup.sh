#!/bin/sh
# setup.sh: checks that this kit reaches the workshop's agent, then prints "Agent ready."
#
#   sh setup.sh                checks the gateway, your gateway key and your OpenAI key
#   sh setup.sh --auth codex   stores your Codex token (asked for, never shown) instead
#
# It reads .env from its own folder and needs only curl. It stops at the first problem with
# one sentence that says what to do. It never prints a key or a token, and never puts one on
# a command line (where other programs could read it): curl gets them on its standard input.
#
# Written by `exoclaw onboard`. Plain POSIX sh: runs under sh, dash, bash, zsh and Git Bash.

# The agent the checks talk to: OpenClaw's default agent.
model=openclaw

fail() {
  printf '%s\n' "$1" >&2
  exit 1
}

progress() {
  printf '%s\n' "$1" >&2
}

usage_sentence='Run "sh setup.sh" to check your kit, or "sh setup.sh --auth codex" to use a Codex token.'
auth=byok
case "${1:-}" in
  "") ;;
  --auth=codex) auth=codex ;;
  --auth=byok) auth=byok ;;
  --auth)
    case "${2:-}" in
      codex) auth=codex ;;
      byok) auth=byok ;;
      *) fail "$usage_sentence" ;;
    esac
    ;;
  *) fail "$usage_sentence" ;;
esac

env_file="$(dirname -- "$0")/.env"
[ -f "$env_file" ] ||
  fail "There is no .env file next to setup.sh: unzip the whole kit, then run setup.sh from inside its folder."
command -v curl >/dev/null 2>&1 ||
  fail "This check needs the program curl, which is not installed: install curl (or ask the organiser), then run setup.sh again."

# env_value NAME: the value of NAME in .env (the last line wins), without surrounding spaces,
# quotes, or the carriage return a Windows editor leaves.
env_value() {
  sed -n "s/^[[:space:]]*\(export[[:space:]][[:space:]]*\)\{0,1\}$1[[:space:]]*=//p" "$env_file" |
    tail -n 1 | tr -d '\r' |
    sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//' -e 's/^"\(.*\)"$/\1/' -e "s/^'\(.*\)'\$/\1/"
}

# quoted VALUE: VALUE with \ and " escaped, for a "…" string in JSON or in a curl config.
quoted() {
  printf '%s' "$1" | sed 's/[\\"]/\\&/g'
}

url=$(env_value OPENCLAW_GATEWAY_URL)
gateway_key=$(env_value EXOCLAW_GATEWAY_KEY)
openai_key=$(env_value OPENAI_API_KEY)
# A copied address may end in / or /v1: the checks add their own paths.
url=${url%/}
url=${url%/v1}
url=${url%/}

# call METHOD PATH [JSON]: one request to the gateway, sending the gateway key and the provider
# key when they are set. Sets $status (000: no answer at all) and $body.
call() {
  answer=$(
    {
      printf 'url = "%s"\n' "$(quoted "$url$2")"
      printf 'request = "%s"\n' "$1"
      if [ -n "$send_gateway_key" ]; then
        printf 'header = "X-Gateway-Key: %s"\n' "$(quoted "$send_gateway_key")"
      fi
      if [ -n "$send_provider_key" ]; then
        printf 'header = "Authorization: Bearer %s"\n' "$(quoted "$send_provider_key")"
      fi
      if [ -n "${3:-}" ]; then
        printf 'header = "Content-Type: application/json"\n'
        printf 'data-binary = "%s"\n' "$(quoted "$3")"
      fi
    } | curl --silent --max-time 60 --config - --write-out ' HTTP_STATUS=%{http_code}' 2>/dev/null
  )
  status=${answer##*HTTP_STATUS=}
  body=${answer% HTTP_STATUS=*}
  case $status in
    [0-9][0-9][0-9]) ;;
    *) status=000 ;;
  esac
}

send_gateway_key=
send_provider_key=

# 1. The gateway answers.
[ -n "$url" ] ||
  fail "OPENCLAW_GATEWAY_URL in .env is empty: put the gateway address from the organiser (it starts with https://) after OPENCLAW_GATEWAY_URL=, then run setup.sh again."
call GET /health
case $status in
  000) fail "Cannot reach the gateway at $url: check your internet connection and that OPENCLAW_GATEWAY_URL in .env is the address the organiser gave, then run setup.sh again." ;;
  200) ;;
  *) fail "The address $url in OPENCLAW_GATEWAY_URL is not the workshop gateway: compare it with the address the organiser gave, then run setup.sh again." ;;
esac
case $body in
  *'"status":"ok"'* | *'"status": "ok"'*) ;;
  *) fail "The address $url in OPENCLAW_GATEWAY_URL is not the workshop gateway: compare it with the address the organiser gave, then run setup.sh again." ;;
esac
progress "Gateway found at $url."

# 2. The gateway key is valid.
case $gateway_key in
  exo_?*) ;;
  *) fail "EXOCLAW_GATEWAY_KEY in .env is empty or damaged: ask the organiser for a new kit." ;;
esac
send_gateway_key=$gateway_key
call GET /api/subscriptions/me
case $status in
  200) ;;
  401) fail "The gateway does not accept the EXOCLAW_GATEWAY_KEY in .env (it was changed or has been revoked): ask the organiser for a new kit." ;;
  429) fail "The gateway is refusing this network for a minute after too many wrong keys: wait one minute, then run setup.sh again." ;;
  000) fail "The gateway stopped answering while checking your key: check your internet connection, then run setup.sh again." ;;
  *) fail "The gateway could not check your key (HTTP $status): wait a minute and run setup.sh again, and if it keeps failing show this message to the organiser." ;;
esac
progress "Gateway key accepted."

# 3. The credential for the agent: your own OpenAI key, or your Codex token stored once.
if [ "$auth" = codex ]; then
  printf 'Paste your Codex token (it stays hidden), then press Enter: ' >&2
  hidden=false
  if [ -t 0 ] && stty -echo 2>/dev/null; then
    hidden=true
    trap 'stty echo 2>/dev/null' EXIT
    trap 'stty echo 2>/dev/null; exit 130' INT TERM
  fi
  token=
  IFS= read -r token || true
  if [ "$hidden" = true ]; then
    stty echo 2>/dev/null
  fi
  printf '\n' >&2
  token=$(printf '%s' "$token" | tr -d '\r' | sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//')
  [ -n "$token" ] ||
    fail 'No token was pasted: run "sh setup.sh --auth codex" again and paste your Codex token when asked.'
  call PUT /api/oauth/codex "{\"token\":\"$(quoted "$token")\"}"
  token=
  case $status in
    200) ;;
    400) fail 'That does not look like a Codex token: copy the whole token again, then run "sh setup.sh --auth codex" and paste it.' ;;
    500) fail "The gateway cannot store Codex tokens yet: tell the organiser, who must set up its token key." ;;
    *) fail "The gateway could not store your Codex token (HTTP $status): wait a minute and try again, and if it keeps failing show this message to the organiser." ;;
  esac
  progress "Codex token stored."
else
  [ -n "$openai_key" ] ||
    fail "OPENAI_API_KEY in .env is empty: paste your own OpenAI key (it starts with sk-) right after OPENAI_API_KEY=, save the file, then run setup.sh again."
  send_provider_key=$openai_key
fi

# 4. A tiny request goes all the way to the agent and back.
call POST /v1/chat/completions "{\"model\":\"$model\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":\"Reply with the word ready.\"}]}"
case $status in
  200) ;;
  401)
    if [ "$auth" = codex ]; then
      fail 'The agent did not accept your Codex token: run "sh setup.sh --auth codex" again and paste a fresh token.'
    fi
    fail "OpenAI did not accept the OPENAI_API_KEY in .env: copy your key again from https://platform.openai.com/api-keys, paste it after OPENAI_API_KEY=, then run setup.sh again."
    ;;
  402) fail "Your requests for this month are used up: ask the organiser." ;;
  429) fail "The agent is busy right now: wait one minute, then run setup.sh again." ;;
  000) fail "The agent did not answer in time: wait a minute and run setup.sh again, and if it keeps failing show this message to the organiser." ;;
  *) fail "The agent could not answer the test request (HTTP $status): wait a minute and run setup.sh again, and if it keeps failing show this message to the organiser." ;;
esac
printf 'Agent ready.\n'
