//! The runs layer: what was run, kept as one record per run ([`record`]), the index that
//! lists thousands of them quickly and resolves references to them ([`index`]), and the
//! questions asked over them: filters, sort keys, metric order ([`query`]).

pub mod index;
pub mod query;
pub mod record;
