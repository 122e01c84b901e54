import Foundation

/// A YAML node: just what the Swagger file uses (block mappings, block and
/// flow lists, plain and quoted scalars; multi-line descriptions are read and dropped).
indirect enum YAMLNode: Equatable {
    case map([(String, YAMLNode)])
    case list([YAMLNode])
    case scalar(String)

    static func == (a: YAMLNode, b: YAMLNode) -> Bool {
        switch (a, b) {
        case (.scalar(let x), .scalar(let y)): x == y
        case (.list(let x), .list(let y)): x == y
        case (.map(let x), .map(let y)): x.map(\.0) == y.map(\.0) && x.map(\.1) == y.map(\.1)
        default: false
        }
    }

    subscript(key: String) -> YAMLNode? {
        if case .map(let entries) = self { return entries.first { $0.0 == key }?.1 }
        return nil
    }

    var string: String? { if case .scalar(let s) = self { s } else { nil } }
    var items: [YAMLNode] { if case .list(let l) = self { l } else { [] } }
    var entries: [(String, YAMLNode)] { if case .map(let m) = self { m } else { [] } }
}

/// Parses the block-structured subset of YAML that firecracker.yaml is written in.
struct YAMLReader {
    private var lines: [(indent: Int, text: String)] = []
    private var index = 0

    static func parse(_ text: String) -> YAMLNode {
        var reader = YAMLReader()
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = String(raw)
            let trimmed = line.drop(while: { $0 == " " })
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            reader.lines.append((line.count - trimmed.count, String(trimmed)))
        }
        guard !reader.lines.isEmpty else { return .map([]) }
        return reader.node(indent: reader.lines[0].indent)
    }

    private static func isListItem(_ text: String) -> Bool { text == "-" || text.hasPrefix("- ") }

    /// Splits `key: value` (or `key:`); nil for a line that is not a mapping entry.
    private static func keyValue(_ text: String) -> (String, String)? {
        if text.hasSuffix(":"), !text.contains(": ") { return (unquote(String(text.dropLast())), "") }
        guard let range = text.range(of: ": ") else { return nil }
        let key = String(text[..<range.lowerBound])
        if key.hasPrefix("\"") != key.hasSuffix("\"") { return nil }
        return (unquote(key), String(text[range.upperBound...]).trimmingCharacters(in: .whitespaces))
    }

    static func unquote(_ text: String) -> String {
        var value = text
        if let hash = value.range(of: " #"), !value.hasPrefix("\"") { value = String(value[..<hash.lowerBound]) }
        value = value.trimmingCharacters(in: .whitespaces)
        if value.count >= 2,
            (value.hasPrefix("\"") && value.hasSuffix("\"")) || (value.hasPrefix("'") && value.hasSuffix("'"))
        {
            return String(value.dropFirst().dropLast())
        }
        return value
    }

    static func scalarOrFlow(_ text: String) -> YAMLNode {
        if text.hasPrefix("["), text.hasSuffix("]") {
            let inner = text.dropFirst().dropLast()
            return .list(inner.split(separator: ",").map { .scalar(unquote(String($0))) })
        }
        return .scalar(unquote(text))
    }

    private mutating func node(indent: Int) -> YAMLNode {
        Self.isListItem(lines[index].text) ? list(indent: indent) : map(indent: indent)
    }

    /// Skips continuation lines of a multi-line scalar.
    private mutating func skipDeeper(than indent: Int) {
        while index < lines.count, lines[index].indent > indent { index += 1 }
    }

    private mutating func value(after text: String, indent: Int) -> YAMLNode {
        index += 1
        if text.isEmpty {
            guard index < lines.count else { return .scalar("") }
            let next = lines[index]
            if next.indent > indent { return node(indent: next.indent) }
            if next.indent == indent, Self.isListItem(next.text) { return list(indent: indent) }
            return .scalar("")
        }
        skipDeeper(than: indent)
        if text == ">-" || text == ">" || text == "|" || text == "|-" { return .scalar("") }
        return Self.scalarOrFlow(text)
    }

    private mutating func map(indent: Int) -> YAMLNode {
        var entries: [(String, YAMLNode)] = []
        while index < lines.count, lines[index].indent == indent, !Self.isListItem(lines[index].text) {
            guard let (key, text) = Self.keyValue(lines[index].text) else {
                index += 1
                skipDeeper(than: indent)
                continue
            }
            entries.append((key, value(after: text, indent: indent)))
        }
        return .map(entries)
    }

    private mutating func list(indent: Int) -> YAMLNode {
        var items: [YAMLNode] = []
        while index < lines.count, lines[index].indent == indent, Self.isListItem(lines[index].text) {
            let content = String(lines[index].text.dropFirst(1)).trimmingCharacters(in: .whitespaces)
            if content.isEmpty {
                index += 1
                items.append(
                    index < lines.count && lines[index].indent > indent
                        ? node(indent: lines[index].indent) : .scalar(""))
            } else if Self.keyValue(content) != nil {
                // `- key: value` starts a mapping indented two past the dash.
                lines[index] = (indent + 2, content)
                items.append(map(indent: indent + 2))
            } else {
                index += 1
                skipDeeper(than: indent)
                items.append(Self.scalarOrFlow(content))
            }
        }
        return .list(items)
    }
}

/// A JSON value as received, keeping booleans, integers and numbers apart.
indirect enum JSONValue: Codable, Equatable {
    case null
    case bool(Bool)
    case integer(Int64)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Int64.self) {
            self = .integer(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .integer(let value): try container.encode(value)
        case .number(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }

    var kind: String {
        switch self {
        case .null: "null"
        case .bool: "boolean"
        case .integer: "integer"
        case .number: "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }
}

/// The parts of firecracker.yaml the stub enforces: each path's methods, their
/// body schema and whether they are pre- or post-boot only, and the definitions.
struct FirecrackerSpec {
    struct Operation {
        var path: String
        var method: String
        var summary: String
        var bodySchema: String?
        var bodyRequired: Bool
        var preBootOnly: Bool { summary.contains("Pre-boot only") }
        var postBootOnly: Bool { summary.contains("Post-boot only") }
    }

    var operations: [Operation] = []
    var definitions: [String: YAMLNode] = [:]

    init(yaml text: String) {
        let root = YAMLReader.parse(text)
        for (path, methods) in root["paths"]?.entries ?? [] {
            for (method, operation) in methods.entries {
                let body = operation["parameters"]?.items.first { $0["in"]?.string == "body" }
                let ref = body?["schema"]?["$ref"]?.string
                operations.append(
                    Operation(
                        path: path, method: method.uppercased(), summary: operation["summary"]?.string ?? "",
                        bodySchema: ref.map { String($0.split(separator: "/").last ?? "") },
                        bodyRequired: body?["required"]?.string == "true"))
            }
        }
        for (name, definition) in root["definitions"]?.entries ?? [] { definitions[name] = definition }
    }

    /// The operation for a concrete path (`/drives/rootfs` matches `/drives/{drive_id}`), with its path parameters.
    func operation(method: String, path: String) -> (Operation, [String: String])? {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        for operation in operations where operation.method == method {
            let template = operation.path.split(separator: "/", omittingEmptySubsequences: false)
            guard template.count == parts.count else { continue }
            var parameters: [String: String] = [:]
            var matches = true
            for (t, p) in zip(template, parts) {
                if t.hasPrefix("{"), t.hasSuffix("}"), !p.isEmpty {
                    parameters[String(t.dropFirst().dropLast())] = String(p)
                } else if t != p {
                    matches = false
                    break
                }
            }
            if matches { return (operation, parameters) }
        }
        return nil
    }

    func methods(for path: String) -> [String] {
        operations.filter { op in operation(method: op.method, path: path)?.0.path == op.path }.map(\.method)
    }

    /// Checks `value` against a definition: type, required fields, no unknown
    /// fields (Firecracker's parser rejects them), enums and integer bounds.
    /// Returns the first violation, phrased like a `fault_message`.
    func validate(_ value: JSONValue, against name: String, at location: String = "body") -> String? {
        guard let schema = definitions[name] else { return "the spec has no definition \(name)" }
        return validate(value, schema: schema, at: location)
    }

    func validate(_ value: JSONValue, schema: YAMLNode, at location: String) -> String? {
        if let ref = schema["$ref"]?.string {
            return validate(value, against: String(ref.split(separator: "/").last ?? ""), at: location)
        }
        let type = schema["type"]?.string ?? (schema["properties"] != nil ? "object" : nil)
        switch (type, value) {
        case (nil, _): break
        case ("object", .object(let fields)):
            let properties = schema["properties"]?.entries ?? []
            for required in schema["required"]?.items.compactMap(\.string) ?? [] where fields[required] == nil {
                return "\(location): missing required field `\(required)`"
            }
            let allowsExtra = schema["additionalProperties"] != nil
            for (key, fieldValue) in fields.sorted(by: { $0.key < $1.key }) {
                guard let property = properties.first(where: { $0.0 == key })?.1 else {
                    if allowsExtra { continue }
                    return
                        "\(location): unknown field `\(key)`, expected one of \(properties.map(\.0).joined(separator: ", "))"
                }
                if let problem = validate(fieldValue, schema: property, at: "\(location).\(key)") { return problem }
            }
        case ("array", .array(let elements)):
            if let itemSchema = schema["items"] {
                for (i, element) in elements.enumerated() {
                    if let problem = validate(element, schema: itemSchema, at: "\(location)[\(i)]") { return problem }
                }
            }
        case ("string", .string(let text)):
            let allowed = schema["enum"]?.items.compactMap(\.string) ?? []
            if !allowed.isEmpty, !allowed.contains(text) {
                return "\(location): `\(text)` is not one of \(allowed.joined(separator: ", "))"
            }
        case ("boolean", .bool): break
        case ("integer", .integer(let number)):
            if let minimum = schema["minimum"]?.string.flatMap({ Int64($0) }), number < minimum {
                return "\(location): \(number) is below the minimum \(minimum)"
            }
            if let maximum = schema["maximum"]?.string.flatMap({ Int64($0) }), number > maximum {
                return "\(location): \(number) is above the maximum \(maximum)"
            }
        case ("number", .integer), ("number", .number): break
        default:
            return "\(location): expected \(type!), got \(value.kind)"
        }
        return nil
    }
}
