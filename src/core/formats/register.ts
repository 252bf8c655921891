/**
 * Registers the optional readers (pickle, kohya/diffusers, GGUF) with open.ts. Imported for its
 * side effect by every entry point (CLI, worker, extension, tests).
 */
export {};
