//! llama.cpp on any x86-64 CPU: its CPU code is one library per x86-64
//! level, chosen at run time. Forcing the plain x86-64 level (what a CPU
//! without AVX gets) still answers, and that library, like the ones every
//! CPU loads, holds no AVX instruction (which would be SIGILL there).
#![cfg(all(feature = "llama", target_arch = "x86_64"))]

use magicfs_llm::{open_backend, ChatMessage, GenParams, LlmConfig, Role, Sampling};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Instructions with a VEX or EVEX encoding (AVX and later) in a library.
fn avx_instructions(lib: &Path) -> usize {
    let out = std::process::Command::new("objdump")
        .args(["-d", "--no-show-raw-insn"])
        .arg(lib)
        .output()
        .expect("objdump (binutils)");
    assert!(out.status.success(), "objdump {}", lib.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            l.contains("%ymm") || l.contains("%zmm") || l.split('\t').nth(1).is_some_and(|i| i.starts_with('v'))
        })
        .count()
}

#[test]
fn the_plain_x86_64_level_answers_and_uses_no_avx() {
    let backends = backends_dir();
    // The libraries every CPU loads, and the plain level.
    let lib = backends.parent().unwrap().join("lib");
    for name in ["libggml-base.so", "libggml.so", "libllama.so"] {
        let p = lib.join(name);
        assert!(p.exists(), "{} is missing", p.display());
        assert_eq!(avx_instructions(&p), 0, "{} uses AVX", p.display());
    }
    std::env::set_var("MAGICFS_LLAMA_CPU", "x64");
    let b = open_backend(&LlmConfig::default()).unwrap();
    b.wait_ready(Duration::from_secs(300)).unwrap();
    let cpu = b.status().detail["cpu"].as_str().unwrap_or_default().to_string();
    assert!(!cpu.contains("AVX"), "the plain level was not the one loaded: {cpu}");
    let p = GenParams {
        max_tokens: 8,
        sampling: Sampling { temperature: 0.0, ..Sampling::defaults(magicfs_llm::Purpose::Chat) },
        ..GenParams::default()
    };
    let c = b
        .chat(&[ChatMessage { role: Role::User, content: "Say hi.".into() }], &p, &mut |_| ControlFlow::Continue(()))
        .unwrap();
    assert!(!c.text.trim().is_empty());
    let x64 = backends.join("libggml-cpu-x64.so");
    assert_eq!(avx_instructions(&x64), 0, "{} uses AVX", x64.display());
}

/// Where the build put the per-level libraries.
fn backends_dir() -> PathBuf {
    let dirs = magicfs_llm::cpu_library_dirs();
    dirs.into_iter().find(|d| d.join("libggml-cpu-x64.so").exists()).expect("libggml-cpu-x64.so")
}
