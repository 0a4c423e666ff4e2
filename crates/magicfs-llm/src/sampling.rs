//! How the next token is picked, per purpose: chat replies, file contents
//! and tree plans each have their own defaults, and every setting can be
//! overridden per session or file (`user.magic.<key>` xattrs) and on the
//! command line (`--sampling PURPOSE.KEY=VALUE`).
//!
//! The defaults were chosen on `magicfs bench-gen` (see BENCHMARKS.md): a
//! repetition penalty over a recent window (llama.cpp's penalties sampler)
//! and DRY keep the small default model from repeating itself, min-p trims
//! the unlikely tail, and a low temperature keeps file contents on the prompt.

use serde::Serialize;

/// What a request is for; each purpose has its own defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Purpose {
    /// A reply in a chat session.
    Chat,
    /// The contents of a generated file.
    File,
    /// The plan of a generated tree (a JSON list of files).
    Tree,
}

impl Purpose {
    /// Every purpose.
    pub const ALL: [Purpose; 3] = [Purpose::Chat, Purpose::File, Purpose::Tree];

    /// `chat`, `file`, `tree`.
    pub fn name(self) -> &'static str {
        match self {
            Purpose::Chat => "chat",
            Purpose::File => "file",
            Purpose::Tree => "tree",
        }
    }

    /// The purpose called `name`.
    pub fn parse(name: &str) -> Option<Purpose> {
        Purpose::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// Sampling settings of one request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sampling {
    /// Temperature; 0 picks the most likely token (greedy).
    pub temperature: f32,
    /// Keep the `top_k` most likely tokens (0: all).
    pub top_k: u32,
    /// Nucleus sampling: keep the most likely tokens up to this total probability (1: off).
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely one (0: off).
    pub min_p: f32,
    /// Divides the logit of every token seen in the last `repeat_last_n` generated tokens (1: off).
    pub repeat_penalty: f32,
    /// Window of the repetition penalty, in generated tokens.
    pub repeat_last_n: u32,
    /// DRY ("don't repeat yourself") strength: penalises continuing a sequence that already
    /// occurred (0: off).
    pub dry_multiplier: f32,
    /// DRY: growth of the penalty with the length of the repeated sequence.
    pub dry_base: f32,
    /// DRY: repeated sequences up to this many tokens are not penalised.
    pub dry_allowed_length: u32,
    /// DRY: how far back (in tokens) repeats are looked for.
    pub dry_last_n: u32,
    /// Random seed (`None`: a new one per request; a retry adds its attempt number).
    pub seed: Option<u32>,
}

/// The keys an override may set, as in `user.magic.<key>` and `--sampling PURPOSE.<key>=V`.
pub const KEYS: [&str; 11] = [
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "repeat_penalty",
    "repeat_last_n",
    "dry_multiplier",
    "dry_base",
    "dry_allowed_length",
    "dry_last_n",
    "seed",
];

impl Sampling {
    /// The defaults of `purpose` (measured with `magicfs bench-gen`).
    pub fn defaults(purpose: Purpose) -> Sampling {
        let base = Sampling {
            temperature: 0.7,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.1,
            repeat_last_n: 64,
            dry_multiplier: 0.8,
            dry_base: 1.75,
            dry_allowed_length: 2,
            dry_last_n: 256,
            seed: None,
        };
        match purpose {
            // Greedy recalled more of what the user said two turns earlier
            // (bench-gen: 11/22 against 9/22 at 0.3 and 2/10 at 0.7); the
            // penalties keep it from looping.
            Purpose::Chat => Sampling { temperature: 0.0, repeat_penalty: 1.15, ..base },
            Purpose::File => Sampling { temperature: 0.3, ..base },
            // The grammar holds a plan's structure; penalties would fight the
            // punctuation JSON repeats.
            Purpose::Tree => Sampling { temperature: 0.2, repeat_penalty: 1.0, dry_multiplier: 0.0, ..base },
        }
    }

    /// Settings for text whose structure a grammar enforces (JSON, YAML,
    /// TOML, CSV, counted lines): no repetition penalties, which would push
    /// the model away from the quotes, colons and newlines the format repeats.
    pub fn for_grammar(&self) -> Sampling {
        Sampling { repeat_penalty: 1.0, dry_multiplier: 0.0, ..self.clone() }
    }

    /// Sets `key` (one of [`KEYS`]) from its text form, checking the range.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let v = value.trim();
        let num = |lo: f32, hi: f32| -> Result<f32, String> {
            v.parse::<f32>()
                .ok()
                .filter(|x| x.is_finite() && (lo..=hi).contains(x))
                .ok_or(format!("{key}={v:?} is not a number from {lo} to {hi}"))
        };
        let int = |hi: u32| -> Result<u32, String> {
            v.parse::<u32>()
                .ok()
                .filter(|x| *x <= hi)
                .ok_or(format!("{key}={v:?} is not a whole number from 0 to {hi}"))
        };
        match key {
            "temperature" => self.temperature = num(0.0, 5.0)?,
            "top_k" => self.top_k = int(100_000)?,
            "top_p" => self.top_p = num(0.0, 1.0)?,
            "min_p" => self.min_p = num(0.0, 1.0)?,
            "repeat_penalty" => self.repeat_penalty = num(0.5, 3.0)?,
            "repeat_last_n" => self.repeat_last_n = int(8192)?,
            "dry_multiplier" => self.dry_multiplier = num(0.0, 5.0)?,
            "dry_base" => self.dry_base = num(1.0, 4.0)?,
            "dry_allowed_length" => self.dry_allowed_length = int(64)?,
            "dry_last_n" => self.dry_last_n = int(8192)?,
            "seed" => self.seed = Some(v.parse::<u32>().map_err(|_| format!("{key}={v:?} is not a whole number"))?),
            _ => return Err(format!("unknown sampling setting '{key}' (known: {})", KEYS.join(", "))),
        }
        Ok(())
    }

    /// Applies every `user.magic.<key>` that `get` finds (a session's or a file's xattrs).
    pub fn apply_overrides(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), String> {
        for key in KEYS {
            if let Some(v) = get(key).filter(|v| !v.trim().is_empty()) {
                self.set(key, &v).map_err(|e| format!("user.magic.{e}"))?;
            }
        }
        Ok(())
    }

    /// The seed of attempt `attempt` (1 first): the configured seed plus the
    /// attempt, or fresh randomness.
    pub fn seed_for(&self, attempt: u32) -> u32 {
        match self.seed {
            Some(s) => s.wrapping_add(attempt.saturating_sub(1)),
            None => {
                let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                (t.subsec_nanos() ^ (t.as_secs() as u32).rotate_left(16))
                    .wrapping_add(attempt.wrapping_mul(0x9e37_79b9))
            }
        }
    }
}

/// Defaults of every purpose, with command-line overrides on top.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingTable {
    /// Chat replies.
    pub chat: Sampling,
    /// File contents.
    pub file: Sampling,
    /// Tree plans.
    pub tree: Sampling,
}

impl Default for SamplingTable {
    fn default() -> Self {
        SamplingTable {
            chat: Sampling::defaults(Purpose::Chat),
            file: Sampling::defaults(Purpose::File),
            tree: Sampling::defaults(Purpose::Tree),
        }
    }
}

impl SamplingTable {
    /// The settings of `purpose`.
    pub fn get(&self, purpose: Purpose) -> &Sampling {
        match purpose {
            Purpose::Chat => &self.chat,
            Purpose::File => &self.file,
            Purpose::Tree => &self.tree,
        }
    }

    fn get_mut(&mut self, purpose: Purpose) -> &mut Sampling {
        match purpose {
            Purpose::Chat => &mut self.chat,
            Purpose::File => &mut self.file,
            Purpose::Tree => &mut self.tree,
        }
    }

    /// Applies `PURPOSE.KEY=VALUE` (`--sampling`); `all.KEY=VALUE` sets every purpose.
    pub fn set(&mut self, spec: &str) -> Result<(), String> {
        let (lhs, value) =
            spec.split_once('=').ok_or(format!("'{spec}': expected PURPOSE.KEY=VALUE, e.g. chat.temperature=0.5"))?;
        let (purpose, key) =
            lhs.split_once('.').ok_or(format!("'{spec}': expected PURPOSE.KEY=VALUE, e.g. file.top_p=0.9"))?;
        let targets: Vec<Purpose> = match purpose {
            "all" => Purpose::ALL.to_vec(),
            p => vec![Purpose::parse(p).ok_or(format!("'{spec}': the purpose is chat, file, tree or all"))?],
        };
        for p in targets {
            self.get_mut(p).set(key, value)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_are_checked() {
        let mut s = Sampling::defaults(Purpose::Chat);
        s.set("top_p", "0.8").unwrap();
        assert_eq!(s.top_p, 0.8);
        assert!(s.set("top_p", "2").unwrap_err().contains("from 0 to 1"));
        assert!(s.set("warmth", "1").unwrap_err().contains("unknown sampling setting"));
        s.apply_overrides(|k| (k == "repeat_penalty").then(|| "1.3".to_string())).unwrap();
        assert_eq!(s.repeat_penalty, 1.3);
        let e = s.apply_overrides(|k| (k == "min_p").then(|| "x".to_string())).unwrap_err();
        assert!(e.starts_with("user.magic.min_p="), "{e}");
        let mut t = SamplingTable::default();
        t.set("file.temperature=0.9").unwrap();
        t.set("all.seed=7").unwrap();
        assert_eq!(t.file.temperature, 0.9);
        assert_eq!((t.chat.seed, t.tree.seed), (Some(7), Some(7)));
        assert!(t.set("nothing").is_err() && t.set("x.temperature=1").is_err());
        assert_eq!(t.chat.seed_for(3), 9);
    }
}
