/**
 * Registers the optional readers (pickle, kohya/diffusers, GGUF) with open.ts. Imported for its
 * side effect by every entry point (CLI, worker, extension, tests).
 */
import { GgufStore, openGgufAdapter } from './gguf';
import { readers } from './open';
import { openPeftBinAdapter } from './peftbin';
import { openLoraFile } from './sdlora';
import { openTorchCheckpoint } from './torchzip';

readers.openPeftBin = (dir) => openPeftBinAdapter(dir);
readers.openLoraFile = (file) => openLoraFile(file);
readers.openGgufAdapter = (file) => openGgufAdapter(file);
readers.openGgufStore = (file) => GgufStore.openFile(file);
readers.openPickleStore = (file) => openTorchCheckpoint(file);
