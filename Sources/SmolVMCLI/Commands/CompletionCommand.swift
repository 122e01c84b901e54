/// `smolvm completion SHELL`: completion scripts that also complete sandbox names.
struct CompletionCommand: CLICommand {
    static let configuration = CommandConfiguration(
        name: "completion",
        abstract: "Print a shell completion script (bash, zsh or fish).",
        usage: "bash|zsh|fish",
        discussion: "Sandbox names are completed from `smolvm sandbox list --all --quiet`.",
        examples: [
            "source <(smolvm completion bash)",
            "smolvm completion zsh > \"${fpath[1]}/_smolvm\"",
            "smolvm completion fish > ~/.config/fish/completions/smolvm.fish",
        ])

    let shell: String

    init(_ arguments: ParsedArguments) throws {
        guard arguments.positionals.count == 1, let shell = arguments.positionals.first else {
            throw UsageError("usage: smolvm completion bash|zsh|fish")
        }
        guard ["bash", "zsh", "fish"].contains(shell) else {
            throw UsageError("unsupported shell '\(shell)'. Supported: bash, zsh, fish")
        }
        self.shell = shell
    }

    static let commands = "run sandbox setup image doctor bench completion"
    static let sandboxCommands = "create list info exec shell stop start delete logs file pause resume"
    static let nameTaking = "info exec shell stop start delete logs pause resume"

    func run() async throws -> Int32 {
        switch shell {
        case "bash": print(Self.bash)
        case "zsh": print(Self.zsh)
        default: print(Self.fish)
        }
        return 0
    }

    static let bash = """
        # bash completion for smolvm
        _smolvm() {
            local cur=${COMP_WORDS[COMP_CWORD]}
            local first=${COMP_WORDS[1]} second=${COMP_WORDS[2]}
            if [ "$COMP_CWORD" -eq 1 ]; then
                COMPREPLY=($(compgen -W "\(commands) --help --version" -- "$cur")); return
            fi
            case "$first" in
                sandbox)
                    if [ "$COMP_CWORD" -eq 2 ]; then
                        COMPREPLY=($(compgen -W "\(sandboxCommands)" -- "$cur")); return
                    fi
                    case "$second" in
                        \(nameTaking.replacingOccurrences(of: " ", with: "|")))
                            if [ "$COMP_CWORD" -eq 3 ]; then
                                COMPREPLY=($(compgen -W "$(smolvm sandbox list --all --quiet 2>/dev/null)" -- "$cur")); return
                            fi ;;
                        file)
                            if [ "$COMP_CWORD" -eq 3 ]; then COMPREPLY=($(compgen -W "upload download" -- "$cur")); return; fi
                            if [ "$COMP_CWORD" -eq 4 ]; then
                                COMPREPLY=($(compgen -W "$(smolvm sandbox list --all --quiet 2>/dev/null)" -- "$cur")); return
                            fi
                            COMPREPLY=($(compgen -f -- "$cur")); return ;;
                    esac ;;
                image) [ "$COMP_CWORD" -eq 2 ] && { COMPREPLY=($(compgen -W "list verify" -- "$cur")); return; } ;;
                completion) COMPREPLY=($(compgen -W "bash zsh fish" -- "$cur")); return ;;
            esac
            case "$cur" in
                -*) COMPREPLY=($(compgen -W "--help --json --image --memory --cpus --env --workdir --timeout --backend --name --all --force" -- "$cur")) ;;
            esac
        }
        complete -F _smolvm smolvm
        """

    static let zsh = """
        #compdef smolvm
        # zsh completion for smolvm
        _smolvm() {
            local -a commands sandbox_commands names
            commands=(\(commands))
            sandbox_commands=(\(sandboxCommands))
            if (( CURRENT == 2 )); then compadd -- $commands --help --version; return; fi
            case $words[2] in
                sandbox)
                    if (( CURRENT == 3 )); then compadd -- $sandbox_commands; return; fi
                    case $words[3] in
                        \(nameTaking.replacingOccurrences(of: " ", with: "|")))
                            if (( CURRENT == 4 )); then names=(${(f)"$(smolvm sandbox list --all --quiet 2>/dev/null)"}); compadd -- $names; return; fi ;;
                        file)
                            if (( CURRENT == 4 )); then compadd -- upload download; return; fi
                            if (( CURRENT == 5 )); then names=(${(f)"$(smolvm sandbox list --all --quiet 2>/dev/null)"}); compadd -- $names; return; fi
                            _files; return ;;
                    esac ;;
                image) (( CURRENT == 3 )) && compadd -- list verify && return ;;
                completion) compadd -- bash zsh fish; return ;;
            esac
            compadd -- --help --json --image --memory --cpus --env --workdir --timeout --backend --name --all --force
        }
        compdef _smolvm smolvm
        """

    static let fish = """
        # fish completion for smolvm
        function __smolvm_names; smolvm sandbox list --all --quiet 2>/dev/null; end
        complete -c smolvm -f
        complete -c smolvm -n '__fish_use_subcommand' -a '\(commands)'
        complete -c smolvm -n '__fish_seen_subcommand_from sandbox; and not __fish_seen_subcommand_from \(sandboxCommands)' -a '\(sandboxCommands)'
        complete -c smolvm -n '__fish_seen_subcommand_from \(nameTaking)' -a '(__smolvm_names)'
        complete -c smolvm -n '__fish_seen_subcommand_from file; and not __fish_seen_subcommand_from upload download' -a 'upload download'
        complete -c smolvm -n '__fish_seen_subcommand_from upload download' -a '(__smolvm_names)'
        complete -c smolvm -n '__fish_seen_subcommand_from image' -a 'list verify'
        complete -c smolvm -n '__fish_seen_subcommand_from completion' -a 'bash zsh fish'
        complete -c smolvm -l help -s h -d 'Show help'
        complete -c smolvm -l json -d 'Print JSON'
        """
}
