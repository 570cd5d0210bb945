//! The build plan: each stage's base (an image, `scratch` or another stage), the stages it
//! reads (`FROM`, `COPY --from`, `RUN --mount from=`), the stages the target needs (the rest are
//! skipped, as BuildKit does) and the levels they can run in: every stage of one level only
//! depends on stages of earlier levels, so a level's stages may build in parallel.

use std::collections::{BTreeMap, BTreeSet};

use strata_dockerfile::instructions::Instruction;
use strata_dockerfile::vars::{BuildContext, GlobalScope};
use strata_dockerfile::{Dockerfile, Location};

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    Scratch,
    /// An image reference (after ARG expansion).
    Image(String),
    /// Another stage, by index.
    Stage(usize),
}

/// Where `COPY --from=` / `RUN --mount from=` reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Image(String),
    Stage(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedStage {
    pub index: usize,
    /// `AS name` (lowercased), if any.
    pub name: Option<String>,
    pub base: Base,
    /// `FROM --platform`, expanded.
    pub platform: Option<String>,
    /// Stages this one reads from, its base included.
    pub depends_on: BTreeSet<usize>,
    /// Images it reads with `--from` (besides its base).
    pub images: BTreeSet<String>,
    pub location: Location,
}

impl PlannedStage {
    /// How errors and progress name it: `name` or `stage-N`.
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| format!("stage-{}", self.index))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub stages: Vec<PlannedStage>,
    /// The stage whose result is the image.
    pub target: usize,
    /// The stages to build, grouped in levels; the target is alone in the last one.
    pub levels: Vec<Vec<usize>>,
}

impl Plan {
    /// Whether the build needs this stage.
    pub fn needs(&self, index: usize) -> bool {
        self.levels.iter().any(|level| level.contains(&index))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct PlanError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// Plans the build of `target` (the last stage when `None`).
pub fn plan(
    dockerfile: &Dockerfile,
    file: &str,
    context: &BuildContext,
    target: Option<&str>,
) -> Result<Plan, PlanError> {
    let error =
        |location: Location, message: String| PlanError { file: file.to_owned(), line: location.start, message };
    if dockerfile.stages.is_empty() {
        return Err(error(Location::new(1, 1), "the Dockerfile has no FROM instruction".to_owned()));
    }
    let global = GlobalScope::new(dockerfile, context).map_err(|e| error(Location::new(1, 1), e.to_string()))?;

    let mut by_name: BTreeMap<String, usize> = BTreeMap::new();
    for (index, stage) in dockerfile.stages.iter().enumerate() {
        if let Some(name) = &stage.name {
            if by_name.insert(name.clone(), index).is_some() {
                return Err(error(
                    stage.location,
                    format!("duplicate stage name {name:?}, stage names should be unique"),
                ));
            }
        }
    }
    // A `--from` value: a stage by name or index, else an image.
    let source = |value: &str, location: Location| -> Result<Source, PlanError> {
        if let Some(index) = by_name.get(&value.to_lowercase()) {
            return Ok(Source::Stage(*index));
        }
        if let Ok(index) = value.parse::<usize>() {
            if index >= dockerfile.stages.len() {
                return Err(error(location, format!("invalid from flag value {value}: no stage with index {index}")));
            }
            return Ok(Source::Stage(index));
        }
        Ok(Source::Image(value.to_owned()))
    };

    let mut stages = Vec::with_capacity(dockerfile.stages.len());
    for (index, stage) in dockerfile.stages.iter().enumerate() {
        let (base_name, platform) = global.expand_from(stage).map_err(|e| error(stage.location, e.to_string()))?;
        if base_name.is_empty() {
            return Err(error(stage.location, format!("base name ({}) should not be blank", stage.base)));
        }
        let mut depends_on = BTreeSet::new();
        let base = if base_name.eq_ignore_ascii_case("scratch") {
            Base::Scratch
        } else if let Some(&other) = by_name.get(&base_name.to_lowercase()) {
            depends_on.insert(other);
            Base::Stage(other)
        } else {
            Base::Image(base_name)
        };
        let mut images = BTreeSet::new();
        for command in &stage.commands {
            let froms: Vec<&str> = match &command.instruction {
                Instruction::Copy(copy) => copy.from.as_deref().into_iter().collect(),
                Instruction::Run(run) => run.mounts.iter().filter_map(|m| m.from.as_deref()).collect(),
                _ => Vec::new(),
            };
            for from in froms {
                // `--from=$STAGE` takes the global ARGs, which is what a stage name can use.
                let expanded = global
                    .expand_from(&strata_dockerfile::Stage { base: from.to_owned(), platform: None, ..stage.clone() })
                    .map(|(value, _)| value)
                    .map_err(|e| error(command.location, e.to_string()))?;
                match source(&expanded, command.location)? {
                    Source::Stage(other) => {
                        depends_on.insert(other);
                    }
                    Source::Image(image) => {
                        images.insert(image);
                    }
                }
            }
        }
        stages.push(PlannedStage {
            index,
            name: stage.name.clone(),
            base,
            platform,
            depends_on,
            images,
            location: stage.location,
        });
    }

    let target = match target {
        None => stages.len() - 1,
        Some(name) => match by_name.get(&name.to_lowercase()) {
            Some(&index) => index,
            None => {
                return Err(PlanError {
                    file: file.to_owned(),
                    line: 0,
                    message: format!("failed to reach build target {name} in Dockerfile"),
                })
            }
        },
    };

    // The stages the target needs, each with its level (longest path from a stage that
    // depends on nothing); a stage met again on the current path is a cycle.
    let mut level_of: BTreeMap<usize, usize> = BTreeMap::new();
    fn visit(
        index: usize,
        stages: &[PlannedStage],
        level_of: &mut BTreeMap<usize, usize>,
        path: &mut Vec<usize>,
    ) -> Result<usize, usize> {
        if let Some(&level) = level_of.get(&index) {
            return Ok(level);
        }
        if path.contains(&index) {
            return Err(index);
        }
        path.push(index);
        let mut level = 0;
        for &dependency in &stages[index].depends_on {
            level = level.max(visit(dependency, stages, level_of, path)? + 1);
        }
        path.pop();
        level_of.insert(index, level);
        Ok(level)
    }
    visit(target, &stages, &mut level_of, &mut Vec::new()).map_err(|looped| {
        error(
            stages[looped].location,
            format!("circular dependency detected on stage: {}", stages[looped].display_name()),
        )
    })?;
    let depth = level_of.values().copied().max().unwrap_or(0);
    let mut levels = vec![Vec::new(); depth + 1];
    for (&index, &level) in &level_of {
        levels[level].push(index);
    }
    Ok(Plan { stages, target, levels })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(text: &str, target: Option<&str>) -> Result<Plan, PlanError> {
        let dockerfile = strata_dockerfile::parse_dockerfile(text, "Dockerfile").expect("parses");
        plan(&dockerfile, "Dockerfile", &BuildContext::default(), target)
    }

    #[test]
    fn bases_sources_and_levels() {
        let text = "\
ARG BASE=busybox
FROM ${BASE} AS base
RUN true
FROM base AS left
RUN echo left > /left
FROM scratch AS right
COPY --from=registry.example/tools:1 /bin/tool /tool
FROM base AS unused
RUN false
FROM left
COPY --from=right /tool /tool
RUN --mount=type=bind,from=0,target=/b true
";
        let plan = plan_of(text, None).expect("plans");
        assert_eq!(plan.stages[0].base, Base::Image("busybox".to_owned()));
        assert_eq!(plan.stages[1].base, Base::Stage(0));
        assert_eq!(plan.stages[2].base, Base::Scratch);
        assert_eq!(plan.stages[2].images, BTreeSet::from(["registry.example/tools:1".to_owned()]));
        assert_eq!(plan.target, 4);
        assert_eq!(plan.stages[4].depends_on, BTreeSet::from([0, 1, 2]));
        // base and right have no stage dependency (level 0, in parallel); left needs base;
        // unused is skipped.
        assert_eq!(plan.levels, vec![vec![0, 2], vec![1], vec![4]]);
        assert!(!plan.needs(3));
        assert_eq!(plan.stages[4].display_name(), "stage-4");
    }

    #[test]
    fn target_selects_and_prunes() {
        let text = "FROM busybox AS a\nFROM a AS b\nFROM busybox AS c\n";
        let plan = plan_of(text, Some("B")).expect("plans");
        assert_eq!(plan.target, 1);
        assert_eq!(plan.levels, vec![vec![0], vec![1]]);
        let missing = plan_of(text, Some("d")).expect_err("no such target");
        assert_eq!(missing.message, "failed to reach build target d in Dockerfile");
    }

    #[test]
    fn forward_references_and_cycles() {
        // A later stage by name is a dependency like any other (the graph decides the order).
        let forward = plan_of("FROM busybox AS a\nCOPY --from=b /x /x\nFROM busybox AS b\n", Some("a")).expect("plans");
        assert_eq!(forward.levels, vec![vec![1], vec![0]]);
        let cycle = plan_of("FROM busybox AS a\nCOPY --from=b /x /x\nFROM a AS b\n", None).expect_err("cycle");
        assert!(cycle.message.starts_with("circular dependency detected on stage: "), "{}", cycle.message);
        let own = plan_of("FROM busybox AS a\nCOPY --from=a /x /x\n", None).expect_err("self");
        assert_eq!(own.to_string(), "Dockerfile:1: circular dependency detected on stage: a");
    }

    #[test]
    fn bad_input_names_the_line() {
        let duplicate = plan_of("FROM busybox AS a\nRUN true\nFROM busybox AS A\n", None).expect_err("duplicate");
        assert_eq!(duplicate.to_string(), "Dockerfile:3: duplicate stage name \"a\", stage names should be unique");
        let index = plan_of("FROM busybox\nFROM busybox\nCOPY --from=7 /x /x\n", None).expect_err("index");
        assert_eq!(index.to_string(), "Dockerfile:3: invalid from flag value 7: no stage with index 7");
        let blank = plan_of("ARG EMPTY\nFROM ${EMPTY}\n", None).expect_err("blank");
        assert!(blank.to_string().starts_with("Dockerfile:2: base name (${EMPTY}) should not be blank"), "{blank}");
    }

    #[test]
    fn build_args_reach_from() {
        let dockerfile =
            strata_dockerfile::parse_dockerfile("ARG V=1\nFROM busybox:${V}\n", "Dockerfile").expect("parses");
        let mut context = BuildContext::default();
        context.build_args.insert("V".to_owned(), "2".to_owned());
        let plan = plan(&dockerfile, "Dockerfile", &context, None).expect("plans");
        assert_eq!(plan.stages[0].base, Base::Image("busybox:2".to_owned()));
    }
}
