/**
 * Node-only entry points (file system), loaded with a dynamic import when called so that importing
 * @owlet/trainer in a browser never evaluates `node:` modules.
 */
import type { Module } from '@owlet/core';

import type { CheckpointFs, FolderCheck } from './checkpoint/atomic-folder.js';
import type { ExportOptions, ExportResult } from './export.js';

/** Writes `model` as a Hugging Face checkpoint folder (config.json + safetensors, sharded above max_shard_size). */
export async function exportPretrained(model: Module, dir: string, options: ExportOptions = {}): Promise<ExportResult> {
  return (await import('./export.js')).exportPretrained(model, dir, options);
}

/** The newest complete `checkpoint-<step>` in `outputDir` (throws "No valid checkpoint found…" when none). */
export async function latestCheckpoint(outputDir: string, fs?: CheckpointFs): Promise<string> {
  return (await import('./checkpoint/trainer-checkpoint.js')).latestCheckpoint(outputDir, fs);
}

/** Complete checkpoints of `outputDir`, oldest first. */
export async function listCheckpoints(outputDir: string, fs?: CheckpointFs): Promise<{ step: number; dir: string }[]> {
  return (await import('./checkpoint/trainer-checkpoint.js')).listCheckpoints(outputDir, fs);
}

/** Whether a folder is a complete checkpoint (marker present, every file's size and SHA-256 right). */
export async function checkCheckpointFolder(
  dir: string,
  options: { verifyHashes?: boolean; fs?: CheckpointFs } = {},
): Promise<FolderCheck> {
  return (await import('./checkpoint/atomic-folder.js')).checkCompleteFolder(dir, options);
}

/**
 * Removes what crashed checkpoint writers left in `dir` (temporary folders, locks) and restores a
 * folder whose replacement never arrived; returns the folder names swept.
 */
export async function sweepStaleCheckpoints(dir: string, fs?: CheckpointFs): Promise<string[]> {
  return (await import('./checkpoint/atomic-folder.js')).sweepStaleTemps(dir, fs);
}

export type {
  CheckpointFs,
  FileHandleLike,
  FolderCheck,
  CompletionMarker,
  ManifestEntry,
} from './checkpoint/atomic-folder.js';
export type { ExportOptions, ExportResult } from './export.js';
