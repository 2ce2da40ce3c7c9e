//! Server-side SVG charts for the pages.

pub mod ticks;
