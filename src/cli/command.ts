export interface CliIo {
  out(text: string): void;
  err(text: string): void;
}

export interface ParsedArgs {
  positionals: string[];
  flags: Set<string>;
  options: Map<string, string>;
}

export interface Command {
  name: string;
  usage: string;
  summary: string;
  help: string;
  /** Options of its own that take a value, beyond the common ones main.ts knows. */
  valued?: readonly string[];
  run(args: ParsedArgs, io: CliIo): number | Promise<number>;
}

/** `--flag`, `--key value`, `--key=value` and positionals; `valued` names the options that take a value. */
export function parseArgs(argv: readonly string[], valued: ReadonlySet<string> = new Set()): ParsedArgs {
  const positionals: string[] = [];
  const flags = new Set<string>();
  const options = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = arg.slice(2, eq < 0 ? undefined : eq);
      if (eq >= 0) options.set(name, arg.slice(eq + 1));
      else if (valued.has(name) && i + 1 < argv.length) options.set(name, argv[++i]!);
      else flags.add(name);
    } else if (arg === '-h') {
      flags.add('help');
    } else {
      positionals.push(arg);
    }
  }
  return { positionals, flags, options };
}
