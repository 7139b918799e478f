export * from "./model.js";
export { problemSchema, formatProblem, hasErrors, sortProblems, limits, type Problem, type SourceLocation } from "./problems.js";
export { parseRefFilter, splitWords } from "./common.js";
export { classifyEncryptedFile, slipwayEncryptedPrefix } from "./encrypted.js";
export { diskFiles, memoryFiles, type FileSource } from "./files.js";
export { configFileNames, loadPipeline, readPipeline, type LoadResult } from "./load.js";
export { flattenSteps, matchesRef, RefMatchError, selectSteps, shouldSkip, type BuildRef } from "./refs.js";
