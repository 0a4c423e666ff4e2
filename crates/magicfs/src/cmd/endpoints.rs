//! `magicfs endpoints add | list | rm | probe`: the registry `compute --on` uses.

use crate::cli::{EndpointsArgs, EndpointsCmd};
use crate::cmd::compute::registry_path;
use magicfs_remote::endpoints::{Endpoint, Usage};
use magicfs_remote::Registry;

pub fn run(a: EndpointsArgs) -> anyhow::Result<i32> {
    let path = registry_path(&a.registry)?;
    let mut reg = Registry::load(&path)?;
    match a.cmd {
        EndpointsCmd::Add { name, url, concurrency, token, budget_requests, budget_bytes } => {
            reg.add(Endpoint {
                name: name.clone(),
                url,
                concurrency,
                token: token.filter(|t| !t.is_empty()),
                budget_requests,
                budget_bytes,
                probe: None,
                usage: Usage::default(),
            })?;
            reg.save()?;
            eprintln!("magicfs endpoints: {name} saved in {}", path.display());
        }
        EndpointsCmd::Rm { name } => {
            reg.remove(&name)?;
            reg.save()?;
            eprintln!("magicfs endpoints: {name} removed");
        }
        EndpointsCmd::List { json } => {
            if json {
                let shown: Vec<serde_json::Value> = reg
                    .endpoints
                    .iter()
                    .map(|e| {
                        let mut v = serde_json::to_value(e).unwrap_or_default();
                        if v.get("token").is_some() {
                            v["token"] = serde_json::json!("(set)");
                        }
                        v["usage"] = serde_json::to_value(e.usage_today()).unwrap_or_default();
                        v
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&shown)?);
            } else {
                println!(
                    "{:<12} {:<32} {:>4} {:>10} {:>10} {:>16} {:>22}",
                    "NAME", "URL", "CONC", "LATENCY", "GB/s", "TODAY req/bytes", "BUDGET req/bytes"
                );
                for e in &reg.endpoints {
                    let u = e.usage_today();
                    let (lat, rate) = e.probe.as_ref().map_or(("-".into(), "-".into()), |p| {
                        (format!("{:.2} ms", p.latency_ms), format!("{:.2}", p.throughput_bps / 1e9))
                    });
                    let opt = |o: Option<u64>| o.map_or("-".to_string(), |v| v.to_string());
                    println!(
                        "{:<12} {:<32} {:>4} {:>10} {:>10} {:>16} {:>22}",
                        e.name,
                        e.url,
                        e.concurrency,
                        lat,
                        rate,
                        format!("{}/{}", u.requests, u.bytes),
                        format!("{}/{}", opt(e.budget_requests), opt(e.budget_bytes))
                    );
                }
            }
        }
        EndpointsCmd::Probe { names, data_url } => {
            let selection = if names.is_empty() { "all".to_string() } else { names.join(",") };
            let chosen = reg.select(&selection)?;
            let mut failed = 0;
            for e in chosen {
                match magicfs_remote::schedule::probe(&e, data_url.as_deref()) {
                    Ok(p) => {
                        println!(
                            "{}: latency {:.2} ms, throughput {:.2} GB/s",
                            e.name,
                            p.latency_ms,
                            p.throughput_bps / 1e9
                        );
                        if let Some(slot) = reg.get_mut(&e.name) {
                            slot.probe = Some(p);
                        }
                    }
                    Err(err) => {
                        failed += 1;
                        eprintln!("magicfs endpoints: {}: probe failed: {err}", e.name);
                    }
                }
            }
            reg.save()?;
            if failed > 0 {
                return Ok(1);
            }
        }
    }
    Ok(0)
}
