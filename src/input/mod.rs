//! Reading the project's YAML inputs (cluster fixtures, the instance catalog, later plans and
//! suites) with errors that point at a file, a line and a field.
//!
//! Two kinds of mistakes are caught here. Syntax and shape errors (bad YAML, a string where a
//! number belongs, an unknown key) come from the parser with its location and the field path.
//! Value errors (a negative count, an unknown instance type) are found after parsing by code that
//! holds [`Spanned`] values, so they can name the line as precisely.

pub mod expand;
pub mod layers;
pub mod schema;
mod yaml;

pub use layers::Layer;
pub use yaml::{InputError, Spanned, load_yaml, parse_yaml};
