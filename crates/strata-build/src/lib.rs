//! `strata build`'s executor. So far: the plan — which stages a build needs, what each stage
//! is based on, which stages it reads from, and which can run at the same time.

pub mod config;
pub mod executor;
pub mod plan;

pub use executor::{
    build, BaseImage, BindSource, BuildError, BuildOptions, CopyStep, Layer, ProgressMode, RunMount, RunStep, Secret,
    Worker,
};
pub use plan::{plan, Base, Plan, PlanError, PlannedStage};
