import Foundation

/// Everything the CLI prints on purpose goes through here: the JSON envelope
/// (`{"ok":…, "data":…, "error":…}`) and aligned tables.
enum Output {
    static func printEnvelope(ok: Bool, data: Any?, error: [String: String]?) {
        let object: [String: Any] = ["ok": ok, "data": data ?? NSNull(), "error": error ?? NSNull()]
        let json =
            (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]))
            ?? Data("{}".utf8)
        FileHandle.standardOutput.write(json + Data("\n".utf8))
    }

    /// Encodes a Codable value into JSON-compatible Foundation objects.
    static func jsonObject<T: Encodable>(_ value: T) -> Any {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        guard let data = try? encoder.encode(value) else { return NSNull() }
        return (try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])) ?? NSNull()
    }

    /// Prints rows as aligned columns under a header.
    static func table(_ header: [String], _ rows: [[String]]) {
        var widths = header.map(\.count)
        for row in rows {
            for (index, cell) in row.enumerated() where index < widths.count {
                widths[index] = max(widths[index], cell.count)
            }
        }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { index, cell in
                index == cells.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }
        print(line(header))
        for row in rows { print(line(row)) }
    }
}
