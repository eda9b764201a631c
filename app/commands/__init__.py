"""One module per group of `pollama` commands; each is an HTTP client of the API only.

Command functions take the parsed arguments and a `Client`, print what
Ollama prints, and return an exit code; they raise `app.client.ClientError`
for anything the user should see as `Error: <message>`.
"""
