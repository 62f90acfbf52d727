//! The HTML kit of the self-contained pages (the run report, `compare --html`, a sweep's
//! `sweep.html`): escaping ([`escape`]), the shared style sheet ([`style`]), the page frame
//! ([`page`]) and the inline SVG charts ([`charts`]); and the compare and sweep pages
//! themselves ([`compare_page`], [`sweep_page`]). Every page is one file with inline CSS and
//! SVG, nothing fetched, the same bytes for the same data.

pub mod charts;
pub mod compare_page;
pub mod escape;
pub mod page;
pub mod style;
pub mod sweep_page;
