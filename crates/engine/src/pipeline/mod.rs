//! Aggregation pipelines: stage parsing and execution over a document stream.

mod group;
mod parse;
mod run;

#[cfg(test)]
mod tests;

use bson::{Bson, Document};

use crate::error::{CommandError, Res};
use crate::expr::Expr;
use crate::matcher::Filter;
use crate::projection::Projection;
use crate::sort::SortSpec;
use group::Acc;
use parse::{parse_stage, stage_doc};
use run::run_stage;

/// Gives `$lookup` access to other collections of the same database.
pub trait Source {
    fn collection_docs(&self, coll: &str) -> Vec<Document>;
}

/// A source with no collections (for update pipelines and tests).
pub struct NoSource;

impl Source for NoSource {
    fn collection_docs(&self, _coll: &str) -> Vec<Document> {
        Vec::new()
    }
}

#[derive(Clone, Debug)]
enum Stage {
    Match(Filter),
    Project(Projection),
    AddFields(Vec<(Vec<String>, Expr)>),
    Sort(SortSpec),
    Skip(u64),
    Limit(u64),
    Group {
        id: Expr,
        accs: Vec<(String, Acc, Expr)>,
    },
    Count(String),
    Unwind {
        path: Vec<String>,
        index: Option<String>,
        preserve: bool,
    },
    ReplaceRoot(Expr),
    SortByCount(Expr),
    Lookup {
        from: String,
        local: Option<Vec<String>>,
        foreign: Option<String>,
        pipeline: Option<Pipeline>,
        as_: Vec<String>,
    },
    Facet(Vec<(String, Pipeline)>),
    Documents(Vec<Document>),
}

/// A parsed pipeline.
#[derive(Clone, Debug, Default)]
pub struct Pipeline {
    stages: Vec<Stage>,
}

impl Pipeline {
    /// Parses an aggregation pipeline (array of stage documents).
    pub fn parse(stages: &[Bson]) -> Res<Pipeline> {
        let mut out = Vec::with_capacity(stages.len());
        for (i, s) in stages.iter().enumerate() {
            let (name, arg) = stage_doc(s)?;
            out.push(parse_stage(name, arg, i)?);
        }
        Ok(Pipeline { stages: out })
    }

    /// Parses an update pipeline (only document-shaping stages are allowed).
    pub fn parse_update(stages: &[Bson]) -> Res<Pipeline> {
        for s in stages {
            let (name, _) = stage_doc(s)?;
            if !matches!(
                name,
                "$addFields" | "$set" | "$project" | "$unset" | "$replaceRoot" | "$replaceWith"
            ) {
                return Err(CommandError::new(
                    72,
                    format!("{name} is not allowed to be used within an update"),
                ));
            }
        }
        Self::parse(stages)
    }

    /// Whether the pipeline starts with `$documents` (collection-less aggregate).
    pub fn starts_with_documents(&self) -> bool {
        matches!(self.stages.first(), Some(Stage::Documents(_)))
    }

    /// Runs the pipeline over `docs`.
    pub fn run(&self, mut docs: Vec<Document>, src: &dyn Source) -> Res<Vec<Document>> {
        for st in &self.stages {
            docs = run_stage(st, docs, src)?;
        }
        Ok(docs)
    }

    /// Runs a document-shaping pipeline over one document (update pipelines).
    pub fn apply_to_doc(&self, doc: &Document) -> Res<Document> {
        let out = self.run(vec![doc.clone()], &NoSource)?;
        Ok(out.into_iter().next().unwrap_or_default())
    }
}
