//! Command-line types and handlers that are more than wiring. Each returns the text to print, or
//! an error for `main` to report; none of them prints or exits by itself.

pub mod accounts;
