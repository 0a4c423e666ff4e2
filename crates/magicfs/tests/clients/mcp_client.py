"""Drives `magicfs mcp` with the independent MCP client, PyPI's `mcp` package.

    python mcp_client.py stdio MAGICFS_BIN MOUNT TAG
    python mcp_client.py http URL TOKEN MOUNT TAG
    python mcp_client.py store-read-only MAGICFS_BIN DATA_DIR FILE TEXT

Against a real MagicFS mount with the real models: initialize, list the
tools, call every tool (chat streams its reply as progress notifications),
read resources, send bad arguments and paths that try to leave the volume,
and (over HTTP) check that the bearer token is enforced. Prints one line per
check and exits non-zero on the first failure.
"""

import asyncio
import base64
import json
import os
import sys
import time
import urllib.error
import urllib.request

import httpx2
from mcp import ClientSession, MCPError, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

TOOLS = {"list", "read", "write", "mkdir", "move", "delete", "stat", "search", "chat", "generate", "compute", "status"}

DISKS = (
    "Hard disk drives fail in predictable ways. Watch the SMART counters for reallocated sectors, "
    "pending sectors and read errors; a drive whose reallocated sector count keeps rising should be "
    "replaced before it loses data. Keep backups on a different disk."
)
COOKING = (
    "To bake sourdough bread, feed the starter the night before, mix flour, water and salt, let the "
    "dough rise slowly, shape the loaf and bake it in a hot oven until the crust is deep brown."
)


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("ok:", what, flush=True)


def data_of(result):
    """The structured content of a successful tool result."""
    if result.is_error:
        raise AssertionError(f"tool failed: {result.content}")
    if result.structured_content is not None:
        return result.structured_content
    return json.loads(result.content[0].text)


def error_of(result):
    """The {"error", "kind"} of a failed tool result."""
    assert result.is_error, f"expected an error, got {result}"
    return result.structured_content or json.loads(result.content[0].text)


async def refused(session, name, args):
    """A call with bad arguments: a protocol error or a tool error, never a crash."""
    try:
        r = await session.call_tool(name, args)
    except MCPError as e:
        return str(e) or "error"
    assert r.is_error, f"{name} {args} was accepted: {r}"
    return (r.structured_content or {}).get("error") or r.content[0].text


async def scenario(session, mount, tag):
    init = await session.initialize()
    check(init.server_info.name == "magicfs", "initialize names the server")
    tools = (await session.list_tools()).tools
    check({t.name for t in tools} == TOOLS, f"tools listed: {sorted(t.name for t in tools)}")
    for t in tools:
        check(t.input_schema.get("type") == "object" and t.description, f"{t.name} has a JSON schema and a description")
    compute_schema = next(t for t in tools if t.name == "compute").input_schema
    check("counteq" in json.dumps(compute_schema), "compute's schema lists the ops")

    async def call(name, **args):
        return data_of(await session.call_tool(name, args))

    d = f"/{tag}"
    await call("mkdir", path=d)
    e = await call("write", path=f"{d}/notes/disks.md", content=DISKS, parents=True)
    check(e["size"] == len(DISKS) and e["kind"] == "file", "write creates a file (parents made)")
    await call("write", path=f"{d}/cooking.md", content=COOKING)
    r = await call("read", path=f"{d}/notes/disks.md", offset=5, length=10)
    check(r["content"] == DISKS[5:15] and r["encoding"] == "text" and not r["eof"], "read returns a byte range")
    blob = bytes(range(256)) * 64
    await call("write", path=f"{d}/blob.bin", content=base64.b64encode(blob).decode(), encoding="base64")
    r = await call("read", path=f"{d}/blob.bin")
    check(r["encoding"] == "base64" and base64.b64decode(r["content"]) == blob, "binary content travels as base64")
    await call("write", path=f"{d}/cooking.md", content="\nServe warm.", mode="append")
    r = await call("read", path=f"{d}/cooking.md")
    check(r["content"] == COOKING + "\nServe warm.", "write appends")
    listing = await call("list", path=d)
    names = [x["name"] for x in listing["entries"]]
    check(names == sorted(names) and {"notes", "cooking.md", "blob.bin"} <= set(names), f"list: {names}")
    await call("mkdir", path=f"{d}/recipes")
    moved = await call("move", **{"from": f"{d}/cooking.md", "to": f"{d}/recipes/bread.md"})
    check(moved["path"] == f"{d}/recipes/bread.md", "move renames into another directory")
    st = await call("stat", path=f"{d}/recipes/bread.md")
    check(st["kind"] == "file" and st["size"] == len(COOKING) + 12 and "xattrs" in st, "stat describes a file")

    # Compute, checked against the same sums in Python.
    out = await call("compute", path=f"{d}/blob.bin", op="counteq", imm=7, window=4096)
    check(out["windows"] == 4 and sum(x["value"] for x in out["results"]) == blob.count(7), "compute counteq per window")
    out = await call("compute", path=f"{d}/blob.bin", op="add")
    check(out["results"][0]["value"] == sum(blob) and out["gbps"] >= 0, "compute add over the whole file, with GB/s")

    # Search: wait for the index to take the new files in.
    deadline = time.time() + 300
    while True:
        status = await call("status")
        s = status.get("search", {})
        if s.get("model") == "ready" and s.get("queued") == 0 and not s.get("indexing"):
            hits = (await call("search", query="when to replace a failing hard drive", k=5))["results"]
            # Another run over the same mount may hold the same text: a tie for first place.
            mine = [h for h in hits if h["path"] == f"{d}/notes/disks.md" and h["score"] >= hits[0]["score"] - 1e-3]
            if mine:
                break
        if time.time() > deadline:
            raise AssertionError(f"search never found the new file: {s}")
        await asyncio.sleep(0.5)
    check("SMART" in mine[0]["passage"] and 0 < mine[0]["score"] <= 1, "search ranks the file first with its passage")

    # Chat with the real model; the reply streams as progress notifications.
    pieces = []

    async def on_progress(progress, total, message):
        if message:
            pieces.append(message)

    r = await session.call_tool("chat", {"session": f"{tag}-chat", "message": "Say hello in one short sentence."},
                                progress_callback=on_progress)
    reply = data_of(r)["reply"]
    check(reply.strip() != "", f"chat replies: {reply!r}")
    check(len(pieces) >= 2 and "".join(pieces).strip() == reply.strip(), f"the reply streamed in {len(pieces)} progress notifications")
    transcript = (await call("read", path=f"/sessions/{tag}-chat"))["content"]
    check(transcript.startswith("User: Say hello") and "Assistant:" in transcript, "the session file holds the turns")

    # Generation with the real model.
    g = await call("generate", prompt="a two-line poem about disks", path=f"{d}/poem.txt")
    check(g["file"]["size"] > 0 and g["preview"].strip() != "", "generate writes a file from a sentence")
    check("user.magic.provenance.generator" in g["file"]["xattrs"], "the generated file carries provenance")
    t = await call("generate", prompt="a tiny command-line todo app in Python", path=f"{d}/todo", kind="tree")
    check(len(t["files"]) >= 1 and all(f["prompt"] for f in t["files"]), f"generate plans a tree: {[f['path'] for f in t['files']]}")

    removed = await call("delete", path=f"{d}/recipes", recursive=True)
    check(removed["entries_removed"] == 2, "delete removes a directory recursively")
    st = await call("status")
    check(st["volume"]["kind"] == "mount" and st["files"] > 0 and "chat" in st, "status reports the volume")

    # Resources.
    res = (await session.list_resources()).resources
    uris = {str(x.uri) for x in res}
    check("magicfs:///.magic/status" in uris and f"magicfs://{d}/notes/disks.md" in uris, "files are listed as magicfs:// resources")
    rr = await session.read_resource(f"magicfs://{d}/notes/disks.md")
    check(rr.contents[0].text == DISKS, "a file resource reads back")
    rr = await session.read_resource("magicfs:///.magic/status")
    check("logical_bytes" in json.loads(rr.contents[0].text), "the status resource is the live status")

    # Bad arguments: errors, never a crash.
    for name, args in [
        ("read", {}),
        ("read", {"path": 5}),
        ("read", {"path": f"{d}/blob.bin", "offset": -1}),
        ("write", {"path": f"{d}/x", "content": "y", "bogus": 1}),
        ("compute", {"path": f"{d}/blob.bin", "op": "sha9"}),
        ("compute", {"path": f"{d}/blob.bin", "op": "counteq"}),
        ("search", {"query": "disks", "k": 0}),
        ("generate", {"prompt": "x", "path": f"{d}/g", "kind": "forest"}),
        ("chat", {"session": "../x", "message": "hi"}),
        ("nope", {}),
    ]:
        why = await refused(session, name, args)
        check(why, f"{name} {args} is refused: {why[:90]}")
    nf = error_of(await session.call_tool("read", {"path": f"{d}/missing"}))
    check(nf["kind"] == "not_found", "a missing file is not_found")

    # Paths that try to leave the volume.
    os.symlink("/etc", os.path.join(mount, tag, "out"))
    for p in ["../../etc/passwd", f"{d}/../../etc/passwd", f"{d}/out/passwd"]:
        e = error_of(await session.call_tool("read", {"path": p}))
        check(e["kind"] == "outside_volume", f"read {p} is refused: {e['error']}")
    e = error_of(await session.call_tool("write", {"path": f"{d}/out/evil", "content": "x"}))
    check(e["kind"] == "outside_volume" and not os.path.exists("/etc/evil"), "a write through a symlink out is refused")
    e = error_of(await session.call_tool("list", {"path": f"{d}/out"}))
    check(e["kind"] == "outside_volume", "listing through a symlink out is refused")
    try:
        await session.read_resource("magicfs:///../etc/passwd")
        raise AssertionError("a resource outside the volume was read")
    except MCPError as err:
        check(True, f"a resource outside the volume is refused: {err}")
    st = await call("status")
    check(st["volume"]["root"] == os.path.realpath(mount), "the server still answers")


def token_enforced(url, token):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}).encode()
    for headers, what in [({}, "no token"), ({"Authorization": "Bearer wrong"}, "a wrong token")]:
        req = urllib.request.Request(url, data=body, method="POST",
                                     headers=dict({"Content-Type": "application/json",
                                                   "Accept": "application/json, text/event-stream"}, **headers))
        try:
            urllib.request.urlopen(req, timeout=10)
            raise AssertionError(f"{what} was let in")
        except urllib.error.HTTPError as e:
            check(e.code == 401 and "error" in json.loads(e.read()), f"HTTP with {what} is 401")


async def read_only_store(session, path, text):
    """`magicfs mcp --data DIR --read-only`: an unmounted store, no writing tools."""
    await session.initialize()
    tools = {t.name for t in (await session.list_tools()).tools}
    check(tools == TOOLS - {"write", "mkdir", "move", "delete", "chat", "generate"}, f"read-only tools: {sorted(tools)}")
    r = data_of(await session.call_tool("read", {"path": path}))
    check(r["content"] == text, "the store's file reads back")
    st = data_of(await session.call_tool("status", {}))
    check(st["volume"]["kind"] == "store" and st["volume"]["read_only"], "status says: a store, read-only")
    why = await refused(session, "write", {"path": "/x", "content": "y"})
    check(why, f"write is not offered: {why[:80]}")
    deadline = time.time() + 300
    while True:
        r = await session.call_tool("search", {"query": "replace a failing hard drive", "k": 3})
        if not r.is_error and data_of(r)["results"]:
            break
        if time.time() > deadline:
            raise AssertionError(f"no search results from the store: {r.content}")
        await asyncio.sleep(0.5)
    check(data_of(r)["results"][0]["path"] == path, "the store's saved index answers searches")


async def main():
    mode = sys.argv[1]
    if mode == "store-read-only":
        binary, data, path, text = sys.argv[2:6]
        params = StdioServerParameters(command=binary, args=["mcp", "--data", data, "--read-only", "--no-chat"],
                                       env=dict(os.environ))
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write, read_timeout_seconds=600) as session:
                await read_only_store(session, path, text)
    elif mode == "stdio":
        binary, mount, tag = sys.argv[2:5]
        params = StdioServerParameters(command=binary, args=["mcp", mount], env=dict(os.environ))
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write, read_timeout_seconds=600) as session:
                await scenario(session, mount, tag)
    else:
        url, token, mount, tag = sys.argv[2:6]
        token_enforced(url, token)
        client = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"},
                                    timeout=httpx2.Timeout(30, read=600))
        async with client:
            async with streamable_http_client(url, http_client=client) as (read, write):
                async with ClientSession(read, write, read_timeout_seconds=600) as session:
                    await scenario(session, mount, tag)
    print("all checks passed", flush=True)


asyncio.run(main())
