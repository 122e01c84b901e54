// `smolvm`: the command-line tool, a thin layer over the SmolVM library.
import Foundation

let status = await SmolVMTool.main(Array(CommandLine.arguments.dropFirst()))
exit(status)
