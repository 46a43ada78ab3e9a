"""Calls the proxy with the official Anthropic Python SDK, as an application would.

Usage: through_proxy.py BASE_URL PLAIN_ID STREAM_ID
Prints one line per call: the message id and its output tokens.
"""

import sys

import anthropic

base_url, plain_id, stream_id = sys.argv[1:4]
client = anthropic.Anthropic(
    base_url=base_url,
    api_key="sk-ant-api03-sdk-test",
    default_headers={"x-tally-account": "acme"},
    max_retries=0,
)
messages = [{"role": "user", "content": "What is the secret recipe?"}]

plain = client.messages.create(
    model="claude-opus-4-20250514",
    max_tokens=1024,
    messages=messages,
    extra_headers={"x-test-id": plain_id},
)
print(plain.id, plain.usage.output_tokens)

with client.messages.stream(
    model="claude-opus-4-20250514",
    max_tokens=1024,
    messages=messages,
    extra_headers={"x-test-id": stream_id},
) as stream:
    final = stream.get_final_message()
print(final.id, final.usage.output_tokens)
