//! The Dockerfile frontend: text → located nodes (`parser`), nodes → typed instructions
//! (`instructions`), shell-word expansion (`shell`), the variable scoping rules of ARG/ENV
//! across stages (`vars`), and BuildKit's text-only build checks (`lint`). Pure: no I/O.

pub mod error;
pub mod instructions;
pub mod lint;
pub mod parser;
pub mod shell;
pub mod vars;

pub use error::{Error, Location};
pub use instructions::{parse_dockerfile, Dockerfile, Instruction, Stage};
pub use parser::{parse, Heredoc, Node, ParseResult};
pub use shell::{Env, Lexer};
