//! Fusing the two rankings of a query: by meaning (cosine similarity of the
//! best passage) and by words (BM25 of the best passage).
//!
//! The default is a weighted sum: a document's fused score is
//! `(cos + w · b / (b + c)) / (1 + w)` with `w = 2`, `c = 6`, where `b` is
//! its BM25 score over the query's exact-looking tokens (with a digit, an
//! underscore, inner punctuation, capitals or camel case: error codes, CVE
//! numbers, identifiers, numbers, file names) and `b / (b + c)` saturates it
//! into 0..1. Such a token decides between near-identical pages; a query of
//! plain words is ranked by meaning alone, because BM25 over plain words
//! only added noise to paraphrased questions (every fusion over all words
//! lost some of them on the relevance set). `w` and `c` were
//! chosen on the relevance set of the tests (BENCHMARKS.md, "Hybrid
//! search"), where reciprocal rank fusion and normalising BM25 by the
//! query's best score were measured as well ([`Ranking`] has them all).

use crate::lexical::LexHit;
use crate::vectors::Scored;
use std::collections::HashMap;

/// How results are ranked.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Ranking {
    /// Cosine similarity alone (no lexical index).
    Semantic,
    /// BM25 alone.
    Lexical,
    /// [`Ranking::Weighted`] with BM25 over the query's exact-looking
    /// tokens only ([`crate::lexical::looks_exact`]): a query of plain words
    /// is ranked by meaning alone.
    WeightedExact {
        /// Weight of the lexical part.
        lexical: f32,
        /// BM25 score that counts half.
        saturation: f32,
    },
    /// `(cos + lexical · b/(b + saturation)) / (1 + lexical)`.
    Weighted {
        /// Weight of the lexical part.
        lexical: f32,
        /// BM25 score that counts half.
        saturation: f32,
    },
    /// `(cos + lexical · b/b_max) / (1 + lexical)`, `b_max` the query's best BM25.
    WeightedMax {
        /// Weight of the lexical part.
        lexical: f32,
    },
    /// Reciprocal rank fusion: `1/(k + rank_cos) + lexical/(k + rank_bm25)`, scaled so that first in both is 1.
    Rrf {
        /// The rank offset (60 in the literature).
        k: f32,
        /// Weight of the lexical ranking.
        lexical: f32,
    },
}

/// The ranking MagicFS uses.
pub const DEFAULT_RANKING: Ranking = Ranking::WeightedExact { lexical: 2.0, saturation: 6.0 };

impl Ranking {
    /// Whether the ranking needs the lexical index.
    pub fn uses_words(self) -> bool {
        self != Ranking::Semantic
    }

    /// Whether BM25 looks only at the query's exact-looking tokens.
    pub fn exact_words_only(self) -> bool {
        matches!(self, Ranking::WeightedExact { .. })
    }

    /// Whether the ranking needs the vectors.
    pub fn uses_meaning(self) -> bool {
        self != Ranking::Lexical
    }
}

/// One document with both of its signals and the fused score.
#[derive(Clone, Debug, PartialEq)]
pub struct Fused {
    /// Document key.
    pub key: String,
    /// Fused score (1 is the best possible).
    pub score: f32,
    /// Cosine similarity of its best passage by meaning (`None`: not computed).
    pub similarity: Option<f32>,
    /// BM25 score of its best passage by words (0: no word matched).
    pub bm25: f32,
    /// The passage shown: the best by meaning, unless only words found
    /// the document or its words weigh more than its meaning in the score.
    pub passage: usize,
}

/// Fuses the semantic candidates `sem` (best first, each with its best
/// passage's cosine), the cosines `extra` of lexical candidates that were
/// not among them, and the lexical candidates `lex` (best first), and
/// returns the best `k`, best first (ties by key, so the order is stable).
pub fn fuse(ranking: Ranking, sem: &[Scored], extra: &[Scored], lex: &[LexHit], k: usize) -> Vec<Fused> {
    let mut docs: HashMap<&str, Fused> = HashMap::new();
    let mut sem_rank: HashMap<&str, usize> = HashMap::new();
    for (i, s) in sem.iter().chain(extra).enumerate() {
        if i < sem.len() {
            sem_rank.insert(&s.key, i + 1);
        }
        docs.entry(&s.key).or_insert(Fused {
            key: s.key.clone(),
            score: 0.0,
            similarity: Some(s.score),
            bm25: 0.0,
            passage: s.passage,
        });
    }
    let mut lex_rank: HashMap<&str, usize> = HashMap::new();
    let mut lex_passage: HashMap<&str, usize> = HashMap::new();
    for (i, l) in lex.iter().enumerate() {
        lex_rank.insert(&l.key, i + 1);
        lex_passage.insert(&l.key, l.passage);
        let d = docs.entry(&l.key).or_insert(Fused {
            key: l.key.clone(),
            score: 0.0,
            similarity: None,
            bm25: 0.0,
            passage: l.passage,
        });
        d.bm25 = l.score;
        if d.similarity.is_none() {
            d.passage = l.passage;
        }
    }
    let best_bm25 = lex.iter().map(|l| l.score).fold(0f32, f32::max);
    let mut out: Vec<Fused> = docs
        .into_values()
        .map(|mut d| {
            let cos = d.similarity.unwrap_or(0.0);
            d.score = match ranking {
                Ranking::Semantic => cos,
                Ranking::Lexical => d.bm25,
                Ranking::Weighted { lexical, saturation } | Ranking::WeightedExact { lexical, saturation } => {
                    let words = lexical * d.bm25 / (d.bm25 + saturation.max(1e-6));
                    if words > cos {
                        d.passage = lex_passage.get(d.key.as_str()).copied().unwrap_or(d.passage);
                    }
                    (cos + words) / (1.0 + lexical)
                }
                Ranking::WeightedMax { lexical } => {
                    let words = if best_bm25 > 0.0 { lexical * d.bm25 / best_bm25 } else { 0.0 };
                    if words > cos {
                        d.passage = lex_passage.get(d.key.as_str()).copied().unwrap_or(d.passage);
                    }
                    (cos + words) / (1.0 + lexical)
                }
                Ranking::Rrf { k, lexical } => {
                    let part = |r: Option<&usize>| r.map_or(0.0, |&r| 1.0 / (k + r as f32));
                    let s = part(sem_rank.get(d.key.as_str())) + lexical * part(lex_rank.get(d.key.as_str()));
                    s * (k + 1.0) / (1.0 + lexical)
                }
            };
            d
        })
        .filter(|d| match ranking {
            Ranking::Semantic => d.similarity.is_some() && sem_rank.contains_key(d.key.as_str()),
            Ranking::Lexical => d.bm25 > 0.0,
            _ => true,
        })
        .collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.key.cmp(&b.key)));
    out.truncate(k);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sc(key: &str, score: f32) -> Scored {
        Scored { key: key.into(), score, passage: 0 }
    }

    fn lx(key: &str, score: f32, passage: usize) -> LexHit {
        LexHit { key: key.into(), score, passage }
    }

    #[test]
    fn a_rare_word_decides_between_near_identical_pages() {
        // Siblings: nearly the same cosine; only one holds the code asked for.
        let sem = [sc("sibling", 0.61), sc("answer", 0.60), sc("other", 0.30)];
        let lex = [lx("answer", 14.0, 0)];
        let r = fuse(DEFAULT_RANKING, &sem, &[], &lex, 10);
        assert_eq!(r[0].key, "answer");
        assert_eq!(fuse(Ranking::Semantic, &sem, &[], &lex, 10)[0].key, "sibling");
    }

    #[test]
    fn common_words_do_not_overturn_a_clear_meaning() {
        let sem = [sc("answer", 0.72), sc("wordy", 0.35)];
        let lex = [lx("wordy", 2.0, 3), lx("answer", 0.5, 0)];
        let r = fuse(DEFAULT_RANKING, &sem, &[], &lex, 10);
        assert_eq!(r.iter().map(|f| f.key.as_str()).collect::<Vec<_>>(), ["answer", "wordy"]);
        assert!(r[0].score <= 1.0 && r[0].score > r[1].score);
    }

    #[test]
    fn words_alone_bring_a_document_in_with_its_own_passage() {
        let sem = [sc("a", 0.5)];
        let extra = [sc("b", 0.1)];
        let lex = [lx("b", 30.0, 7), lx("c", 1.0, 2)];
        let r = fuse(DEFAULT_RANKING, &sem, &extra, &lex, 10);
        // Its words outweigh its meaning: the passage shown is the one with the words.
        let b = r.iter().find(|f| f.key == "b").unwrap();
        assert_eq!((b.similarity, b.passage), (Some(0.1), 7));
        let a = r.iter().find(|f| f.key == "a").unwrap();
        assert_eq!((a.bm25, a.passage), (0.0, 0));
        let c = r.iter().find(|f| f.key == "c").unwrap();
        assert_eq!((c.similarity, c.passage), (None, 2));
        // Semantic ranking lists only what meaning found; lexical only what words found.
        assert_eq!(fuse(Ranking::Semantic, &sem, &extra, &lex, 10).len(), 1);
        assert_eq!(fuse(Ranking::Lexical, &sem, &extra, &lex, 10)[0].key, "b");
        let rrf = fuse(Ranking::Rrf { k: 60.0, lexical: 1.0 }, &sem, &extra, &lex, 10);
        assert_eq!(rrf.len(), 3);
        assert!(rrf.iter().all(|f| f.score <= 1.0));
        assert_eq!(fuse(DEFAULT_RANKING, &sem, &extra, &lex, 2).len(), 2);
    }
}
