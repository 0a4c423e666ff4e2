"""Drives the MagicFS web console in real headless Chromium (Debian's
/usr/bin/chromium, through PyPI's playwright):

    python console_browser.py URL TOKEN WORKDIR

Logs in with the token, uploads a file, finds it by search, chats and sees
the reply stream in, generates a small tree, runs a compute op, downloads a
file, and checks that a file named `<img src=x onerror=alert(1)>` shows as
text. Prints one line per check; exits non-zero on the first failure.
"""

import os
import sys
import time

from playwright.sync_api import sync_playwright

URL, TOKEN, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
EVIL = "<img src=x onerror=alert(1)>"
VOLCANO = (
    "Volcanoes erupt when magma rises through the crust. Lava flows, ash clouds and pyroclastic "
    "flows follow; seismographs record the tremors that come before an eruption."
)
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("ok:", what, flush=True)


def wait_js(page, expr, arg=None, timeout=60):
    """Polls `expr` (a JS function of `arg`) until it is truthy. (Playwright's
    own polling evaluates strings, which the console's CSP forbids.)"""
    deadline = time.time() + timeout
    while not page.evaluate(expr, arg):
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {expr}")
        time.sleep(0.2)


def tab(page, name):
    page.click(f"#tabs button[data-tab={name}]")
    page.wait_for_selector(f"#tab-{name}", state="visible")


def main():
    os.makedirs(WORK, exist_ok=True)
    upload = os.path.join(WORK, "volcanoes.md")
    with open(upload, "w") as f:
        f.write(VOLCANO)
    evil = os.path.join(WORK, EVIL)
    with open(evil, "w") as f:
        f.write("just text")
    dialogs = []
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            os.path.join(WORK, "profile"), executable_path="/usr/bin/chromium", headless=True, args=ARGS,
            accept_downloads=True)
        page = ctx.new_page()
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))

        # Log in: a wrong token is refused, the right one opens the console.
        page.goto(URL + "/console/")
        page.fill("#token", "wrong-token")
        page.click("#login-button")
        wait_js(page, "() => document.getElementById('login-error').textContent.length > 0")
        check(page.is_visible("#login") and not page.is_visible("#app"), "a wrong token is refused")
        page.fill("#token", TOKEN)
        page.click("#login-button")
        page.wait_for_selector("#app", state="visible")
        check("mount" in page.text_content("#volume"), "logged in with the token")

        # Upload two files; the odd name shows as text.
        for path in (upload, evil):
            page.set_input_files("#upload-input", path)
            page.click("#upload")
            wait_js(page, "(n) => [...document.querySelectorAll('#files a.name')].some(a => a.textContent === n)",
                    os.path.basename(path))
        check(page.is_visible("text=volcanoes.md"), "upload shows the file in the browser")
        names = page.eval_on_selector_all("#files a.name", "els => els.map(e => e.textContent)")
        check(EVIL in names, f"the file named {EVIL} is listed by its name")
        check(page.eval_on_selector_all("#app img", "els => els.length") == 0, "no <img> element was created from it")
        cell = page.eval_on_selector_all("#files a.name", f"els => els.find(e => e.textContent === {EVIL!r}).innerHTML")
        check("&lt;img" in cell, f"its name is escaped in the page: {cell}")

        # Download it back.
        with page.expect_download() as d:
            page.click("#files a.name >> text=volcanoes.md")
        saved = os.path.join(WORK, "downloaded.md")
        d.value.save_as(saved)
        check(open(saved).read() == VOLCANO, "download returns the uploaded bytes")

        # Search: the new file is found once the index has it.
        tab(page, "search")
        deadline = time.time() + 300
        while True:
            page.fill("#query", "volcanic eruption lava and ash")
            page.click("#search-form button")
            wait_js(page, "() => !document.getElementById('search-msg').textContent.startsWith('searching')")
            paths = page.eval_on_selector_all(".hit-path", "els => els.map(e => e.textContent)")
            if paths and paths[0] == "/volcanoes.md":
                break
            if time.time() > deadline:
                raise AssertionError(f"search never ranked the upload first: {paths} {page.text_content('#search-msg')}")
            time.sleep(1)
        passage = page.text_content(".hit .passage")
        check("magma" in passage, "search ranks the upload first and shows its passage")

        # Chat: count the updates of the reply while it streams.
        tab(page, "chat")
        page.evaluate("""() => {
            window.__updates = 0;
            new MutationObserver(() => { window.__updates++; })
                .observe(document.getElementById('transcript'), {subtree: true, childList: true, characterData: true});
        }""")
        page.fill("#session", "browser")
        page.fill("#message", "Tell me about volcanoes in two sentences.")
        page.click("#send")
        wait_js(page, "() => document.querySelector('.turn.assistant.complete, .turn.assistant.error') !== null", timeout=300)
        reply = page.text_content(".turn.assistant")
        updates = page.evaluate("window.__updates")
        check(reply.strip() != "", f"chat shows the reply: {reply[:80]!r}")
        check(updates >= 4, f"the reply streamed in ({updates} updates)")

        # Generate a small tree.
        tab(page, "generate")
        page.fill("#gen-prompt", "a tiny todo app in Python")
        page.fill("#gen-path", "/todo")
        page.select_option("#gen-kind", "tree")
        page.click("#gen-form button")
        wait_js(page, "() => document.querySelectorAll('.gen-file').length > 0 || "
                      "document.getElementById('gen-msg').classList.contains('error')", timeout=300)
        files = page.eval_on_selector_all(".gen-file", "els => els.map(e => e.textContent)")
        check(files and all(f.startswith("/todo/") for f in files), f"generate made a tree: {files}")

        # Compute over the upload, checked against Python's sum.
        tab(page, "compute")
        page.fill("#c-path", "/volcanoes.md")
        page.select_option("#c-op", "add")
        page.fill("#c-window", "64")
        page.click("#compute-form button")
        wait_js(page, "() => document.getElementById('c-summary').textContent.includes('GB/s')")
        values = page.eval_on_selector_all("#c-results tbody tr", "rows => rows.map(r => Number(r.cells[2].textContent))")
        data = VOLCANO.encode()
        expected = [sum(data[i:i + 64]) for i in range(0, len(data), 64)]
        check(values == expected, f"compute shows one sum per 64-byte window and the rate: {page.text_content('#c-summary')}")

        # Status: live counters.
        tab(page, "status")
        wait_js(page, "() => document.querySelectorAll('#cards .card').length > 5")
        check("ready" in page.text_content("#cards"), "the status page shows the models' state")

        check(not dialogs, f"no script ran from a file name (dialogs: {dialogs})")
        check(not errors, f"no script errors: {errors}")
        ctx.close()
    print("all checks passed", flush=True)


main()
