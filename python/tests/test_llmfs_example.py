"""LLMFS's usage example, ported to magicfs names, with the default model:
mkdir, write, read, xattrs, symlink, save, load, generate_structure, and a
generated file filled on its first read."""

import magicfs
from conftest import GGUF, need


def test_llmfs_usage_example_with_the_default_model(tmp_path):
    need(GGUF)
    saved = str(tmp_path / "x.json")

    # --- the example (LLMFS() -> magicfs.open_store(memory=True)) ---
    fs = magicfs.open_store(memory=True, max_tokens=64)
    fs.mkdir("/docs")
    fs.write("/docs/hello.txt", "Hello from MagicFS\n")
    print(fs.read("/docs/hello.txt").decode())
    fs.setxattr("/docs/hello.txt", "user.author", "ada")
    print(fs.getxattr("/docs/hello.txt", "user.author"))
    fs.symlink("/docs/hello.txt", "/hello")
    fs.save(saved)
    fs2 = magicfs.load(saved)                      # LLMFS.load("x.json")
    print(fs2.read("/hello").decode())
    created = fs.generate_structure("a CLI todo app in Python")
    print(created)
    # --- end of the example ---

    assert fs.has_model and fs2.has_model
    assert fs2.read("/docs/hello.txt") == b"Hello from MagicFS\n"
    assert fs2.getxattr("/docs/hello.txt", "user.author") == b"ada"
    assert fs2.readlink("/hello") == "/docs/hello.txt"
    assert created, "the model planned no files"
    for path in created:
        assert fs.stat(path).st_size == 0, "generated files stay empty until read"
        assert fs.getxattr(path, "user.magic.prompt").strip()
    assert fs.getxattr("/", "user.magic.prompt") == b"a CLI todo app in Python"

    # Generation on first read: the model writes the file, which then stays.
    first = created[0]
    text = fs.read(first)
    assert text.strip(), "generated content is empty"
    assert fs.read(first) == text, "read again: the same content"
    assert fs.getxattr(first, "user.magic.provenance.generator") == b"llm"
    assert b"smollm2" in fs.getxattr(first, "user.magic.provenance.model").lower()
    assert fs.stat(first).st_size == len(text)
    with fs.open(created[-1], "rb") as f:  # through a file object too
        assert f.read().strip()
    fs.close()
    fs2.close()


def test_without_a_model_generation_says_how_to_configure_one(store):
    store.write("empty.txt", b"")
    store.setxattr("empty.txt", "user.magic.prompt", "a poem")
    assert store.read("empty.txt") == b""  # no model: nothing is generated, the file reads as it is
    try:
        store.generate_structure("a todo app")
    except magicfs.GenerationError as e:
        assert "model" in str(e)
    else:
        raise AssertionError("generate_structure without a model did not fail")
