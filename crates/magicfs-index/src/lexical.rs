//! The lexical side of search: BM25 over the same passages as the vectors,
//! in a tantivy index held in memory. It is rebuilt from the stored records
//! when the index opens (like the vector matrix), so it never disagrees
//! with them after a crash and needs no files of its own.
//!
//! One tantivy document per passage: the document's number (`kid`, mapped
//! to its key here), the passage's place in it (`idx`), its text, and the
//! file's base name (so a query that is a file name finds the file). Words
//! are split at every character that is not a letter or digit and
//! lower-cased, without stemming: `ERR_CONN_RESET`, `CVE-2024-1234` and
//! `nginx.conf` are matched word for word, and the words of a query that
//! was written as one token (`CVE-2024-1234`) also count as a phrase.

use crate::IndexError;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, BoostQuery, Occur, PhraseQuery, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions};
use tantivy::tokenizer::{LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer};
use tantivy::{doc, Index as Tantivy, IndexReader, IndexWriter, ReloadPolicy, Term};

/// Name of the analyzer of the text fields.
const ANALYZER: &str = "magicfs_words";
/// Memory of the single indexing thread (tantivy's minimum is 15 MB).
const WRITER_BYTES: usize = 32 << 20;
/// Weight of a match in the file name against one in the text.
const NAME_BOOST: f32 = 1.0;
/// Weight of a query token's words found as a phrase.
const PHRASE_BOOST: f32 = 1.0;
/// Most query words used (a pasted paragraph is cut).
const MAX_QUERY_TERMS: usize = 64;

/// One lexically scored document: its key, best passage and BM25 score.
#[derive(Clone, Debug)]
pub struct LexHit {
    /// Document key.
    pub key: String,
    /// Index of its best passage.
    pub passage: usize,
    /// BM25 score of that passage (with the name and phrase boosts).
    pub score: f32,
}

#[derive(Default)]
struct Ids {
    by_key: HashMap<String, u64>,
    keys: HashMap<u64, String>,
    next: u64,
}

/// The BM25 index of every passage.
pub struct Lexical {
    writer: Mutex<IndexWriter>,
    reader: IndexReader,
    kid: Field,
    idx: Field,
    text: Field,
    name: Field,
    ids: Mutex<Ids>,
    /// Changes since the last [`Lexical::commit`].
    pending: AtomicUsize,
}

fn err(what: &str, e: impl std::fmt::Display) -> IndexError {
    IndexError::Store(format!("lexical index: {what}: {e}"))
}

fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default()).filter(RemoveLongFilter::limit(64)).filter(LowerCaser).build()
}

/// True for a query token written like an exact term rather than a plain
/// word: with a digit (`E4012`, `9443`, `v2.14.3`), an underscore or inner
/// punctuation (`max_wal_size`, `CVE-2024-31337`, `nginx.conf`), in capitals
/// (`EADDRINUSE`, `HTTP`) or camel case (`getUserById`).
pub fn looks_exact(token: &str) -> bool {
    let t = token.trim_matches(|c: char| !c.is_alphanumeric());
    if t.is_empty() {
        return false;
    }
    let digit = t.chars().any(|c| c.is_ascii_digit());
    let inner = t.chars().any(|c| !c.is_alphanumeric() && c != '\'' && c != '\u{2019}');
    let letters: Vec<char> = t.chars().filter(|c| c.is_alphabetic()).collect();
    let caps = letters.len() >= 2 && letters.iter().all(|c| c.is_uppercase());
    let camel = t.chars().zip(t.chars().skip(1)).any(|(a, b)| a.is_lowercase() && b.is_uppercase());
    digit || inner || caps || camel
}

/// The tokens of `query` that look like exact terms ([`looks_exact`]), space-separated.
pub fn exact_terms(query: &str) -> String {
    query.split_whitespace().filter(|t| looks_exact(t)).collect::<Vec<_>>().join(" ")
}

/// The words of `text` as the lexical index sees them.
pub fn words(text: &str) -> Vec<String> {
    let mut a = analyzer();
    let mut out = Vec::new();
    let mut s = a.token_stream(text);
    while let Some(t) = s.next() {
        out.push(t.text.clone());
    }
    out
}

impl Lexical {
    /// An empty index in memory.
    pub fn new() -> Result<Lexical, IndexError> {
        let mut sb = Schema::builder();
        let kid = sb.add_u64_field("kid", NumericOptions::default().set_indexed().set_fast());
        let idx = sb.add_u64_field("idx", NumericOptions::default().set_fast());
        let words = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(ANALYZER)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        );
        let text = sb.add_text_field("text", words.clone());
        let name = sb.add_text_field("name", words);
        let index = Tantivy::create_in_ram(sb.build());
        index.tokenizers().register(ANALYZER, analyzer());
        let writer = index.writer_with_num_threads(1, WRITER_BYTES).map_err(|e| err("writer", e))?;
        let reader =
            index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into().map_err(|e| err("reader", e))?;
        Ok(Lexical {
            writer: Mutex::new(writer),
            reader,
            kid,
            idx,
            text,
            name,
            ids: Mutex::default(),
            pending: AtomicUsize::new(0),
        })
    }

    /// Replaces the passages of `key` (a file whose base name is `name`);
    /// seen by searches after the next [`Lexical::commit`].
    pub fn set(&self, key: &str, name: &str, texts: &[String]) -> Result<(), IndexError> {
        let id = {
            let mut ids = self.ids.lock();
            match ids.by_key.get(key) {
                Some(&id) => id,
                None => {
                    let id = ids.next;
                    ids.next += 1;
                    ids.by_key.insert(key.to_string(), id);
                    ids.keys.insert(id, key.to_string());
                    id
                }
            }
        };
        let w = self.writer.lock();
        w.delete_term(Term::from_field_u64(self.kid, id));
        for (i, t) in texts.iter().enumerate() {
            w.add_document(doc!(self.kid => id, self.idx => i as u64, self.text => t.as_str(), self.name => name))
                .map_err(|e| err("add", e))?;
        }
        self.pending.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Forgets `keys`; seen by searches after the next [`Lexical::commit`].
    pub fn remove(&self, keys: &[String]) {
        let mut ids = self.ids.lock();
        let w = self.writer.lock();
        for k in keys {
            if let Some(id) = ids.by_key.remove(k) {
                ids.keys.remove(&id);
                w.delete_term(Term::from_field_u64(self.kid, id));
                self.pending.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Changes not yet visible to searches.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// Makes every change so far visible to searches.
    pub fn commit(&self) -> Result<(), IndexError> {
        let n = self.pending.swap(0, Ordering::AcqRel);
        if n == 0 {
            return Ok(());
        }
        self.writer.lock().commit().map_err(|e| err("commit", e))?;
        self.reader.reload().map_err(|e| err("reload", e))
    }

    /// The BM25 query for `query`: every word of it in the text or the
    /// name, and the words of each token that splits into several as a phrase.
    fn query(&self, query: &str) -> Option<Box<dyn Query>> {
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for token in query.split_whitespace() {
            let ws = words(token);
            if ws.len() > 1 && ws.len() <= 8 {
                let terms: Vec<Term> = ws.iter().map(|w| Term::from_field_text(self.text, w)).collect();
                clauses
                    .push((Occur::Should, Box::new(BoostQuery::new(Box::new(PhraseQuery::new(terms)), PHRASE_BOOST))));
            }
            for w in ws {
                if seen.len() >= MAX_QUERY_TERMS || !seen.insert(w.clone()) {
                    continue;
                }
                let t = Term::from_field_text(self.text, &w);
                clauses.push((Occur::Should, Box::new(TermQuery::new(t, IndexRecordOption::WithFreqs))));
                let n = Term::from_field_text(self.name, &w);
                let q = TermQuery::new(n, IndexRecordOption::WithFreqs);
                clauses.push((Occur::Should, Box::new(BoostQuery::new(Box::new(q), NAME_BOOST))));
            }
        }
        (!seen.is_empty()).then(|| Box::new(BooleanQuery::new(clauses)) as Box<dyn Query>)
    }

    /// The `k` best documents for `query`, each by its best passage.
    pub fn search(&self, query: &str, k: usize) -> Result<Vec<LexHit>, IndexError> {
        let Some(q) = self.query(query) else { return Ok(Vec::new()) };
        let searcher = self.reader.searcher();
        // Passages, not documents, are ranked: ask for enough that k documents come out.
        let limit = k.saturating_mul(8).max(64);
        let top = searcher.search(&q, &TopDocs::with_limit(limit).order_by_score()).map_err(|e| err("search", e))?;
        let ids = self.ids.lock();
        let mut out: Vec<LexHit> = Vec::new();
        let mut have = std::collections::HashSet::new();
        let mut columns: HashMap<u32, (tantivy::columnar::Column<u64>, tantivy::columnar::Column<u64>)> =
            HashMap::new();
        for (score, addr) in top {
            let cols = match columns.entry(addr.segment_ord) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    let ff = searcher.segment_reader(addr.segment_ord).fast_fields();
                    let kid = ff.u64("kid").map_err(|e| err("kid column", e))?;
                    let idx = ff.u64("idx").map_err(|e| err("idx column", e))?;
                    v.insert((kid, idx))
                }
            };
            let (Some(id), Some(i)) = (cols.0.first(addr.doc_id), cols.1.first(addr.doc_id)) else { continue };
            let Some(key) = ids.keys.get(&id) else { continue };
            if have.insert(id) {
                out.push(LexHit { key: key.clone(), passage: i as usize, score });
                if out.len() == k {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Number of documents with passages (after the last commit).
    pub fn docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn exact_terms_rank_their_page_first() {
        let l = Lexical::new().unwrap();
        l.set("a", "advisory-a.md", &s(&["Advisory for CVE-2024-1234: heap overflow in the parser."])).unwrap();
        l.set("b", "advisory-b.md", &s(&["Advisory for CVE-2024-1243: heap overflow in the parser."])).unwrap();
        l.set("c", "nginx.conf", &s(&["worker_processes auto;", "error_log /var/log/nginx/error.log;"])).unwrap();
        l.commit().unwrap();
        assert_eq!(l.search("CVE-2024-1243", 5).unwrap()[0].key, "b");
        assert_eq!(l.search("cve-2024-1234", 5).unwrap()[0].key, "a");
        let hits = l.search("error_log", 5).unwrap();
        assert_eq!((hits[0].key.as_str(), hits[0].passage), ("c", 1));
        assert_eq!(l.search("nginx.conf", 5).unwrap()[0].key, "c");
        assert!(l.search("   ", 5).unwrap().is_empty());
        assert!(l.search("zebra", 5).unwrap().is_empty());
    }

    #[test]
    fn exact_looking_tokens() {
        for t in [
            "E4012",
            "9443",
            "v2.14.3",
            "max_wal_size",
            "CVE-2024-31337",
            "nginx.conf",
            "EADDRINUSE",
            "getUserById",
            "(40P01)",
        ] {
            assert!(looks_exact(t), "{t}");
        }
        for t in ["network", "connection", "don't", "Hello", "a", "?"] {
            assert!(!looks_exact(t), "{t}");
        }
        assert_eq!(exact_terms("what does error E4012 mean?"), "E4012");
        assert_eq!(exact_terms("how do plants make food"), "");
    }

    #[test]
    fn replace_and_remove_take_effect_at_commit() {
        let l = Lexical::new().unwrap();
        l.set("a", "a.txt", &s(&["alpha words"])).unwrap();
        l.commit().unwrap();
        l.set("a", "a.txt", &s(&["beta words"])).unwrap();
        assert_eq!(l.search("alpha", 5).unwrap().len(), 1, "old text until commit");
        l.commit().unwrap();
        assert!(l.search("alpha", 5).unwrap().is_empty());
        assert_eq!(l.search("beta", 5).unwrap()[0].key, "a");
        l.remove(&["a".to_string()]);
        l.commit().unwrap();
        assert!(l.search("beta", 5).unwrap().is_empty());
        assert_eq!(l.docs(), 0);
    }
}
