/**
 * Formerly registered the optional readers with open.ts as a side effect. open.ts now imports every
 * reader directly; this empty module stays only so that existing `import './formats/register'`
 * lines keep compiling (the architecture test keeps it free of statements). Do not add imports of it.
 */
export {};
